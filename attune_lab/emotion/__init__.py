"""The emotion lab: labelled corpora (``dataset``), held-out protocols and training (``evaluation``), the scores
(``measures``) and the evaluation of whole backends (``benchmark``)."""
