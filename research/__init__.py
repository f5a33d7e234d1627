"""Word-window NER: the library the entry points of experiments/ call.

Its folders are its layers (docs/design.md): `formulas` (the decks'
formulas, their hand-derived gradients and the gradient check), `data`,
`training`, `evaluation` and `reports` (the only one that imports
matplotlib), and `studies`, the experiments' computations. At the top:
`setup` (a run resolved once: the objective's record, the task, the
decoding; parameter init and the one prediction dispatch), `workdir` (run
directories and the model files), `files` (atomic, verified writes),
`errors` and `timing`. Nothing here reads a flag.
"""
