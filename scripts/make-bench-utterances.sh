#!/usr/bin/env bash
# Ten short English utterances spoken by espeak-ng (160 wpm), one WAV each, for `run_agent.py bench-latency`.
# Usage: bash scripts/make-bench-utterances.sh OUT_DIR
set -euo pipefail
out=${1:?usage: $0 OUT_DIR}
command -v espeak-ng >/dev/null || { echo "espeak-ng is needed (sudo apt-get install espeak-ng)" >&2; exit 1; }
mkdir -p "$out"
i=0
while IFS= read -r line; do
  i=$((i + 1))
  espeak-ng -s 160 -w "$(printf '%s/u%02d.wav' "$out" "$i")" "$line"
done <<'LINES'
I had a really rough day at work today.
Can you tell me something nice about the weather?
My best friend is moving away next month.
I just got the job I wanted, I am so happy!
I can't sleep, I keep worrying about my exam.
What should I cook for dinner tonight?
The train was late again and I missed my meeting.
I finally finished painting the kitchen.
Do you think it will rain tomorrow?
I feel a bit lonely these evenings.
LINES
echo "wrote $i utterances to $out"
