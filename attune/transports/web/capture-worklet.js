// AudioWorklet: the microphone's samples (the AudioContext runs at 16 kHz, so the browser has resampled them)
// as PCM16 little-endian frames of 20 ms, posted to the page, which sends each as one binary WebSocket message.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = Math.round(sampleRate / 50); // samples in 20 ms at the context's rate
    this.buf = new Int16Array(this.frame);
    this.n = 0;
    this.sumSq = 0;
  }
  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const ch = input[0];
    for (let i = 0; i < ch.length; i++) {
      const s = Math.max(-1, Math.min(1, ch[i]));
      this.sumSq += s * s;
      this.buf[this.n++] = s < 0 ? s * 32768 : s * 32767;
      if (this.n === this.frame) {
        this.port.postMessage({ pcm: this.buf.buffer, rms: Math.sqrt(this.sumSq / this.frame) }, [this.buf.buffer]);
        this.buf = new Int16Array(this.frame);
        this.n = 0;
        this.sumSq = 0;
      }
    }
    return true;
  }
}
registerProcessor("capture-processor", CaptureProcessor);
