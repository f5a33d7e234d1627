"""Word-window NER: the library the entry points of experiments/ call.

Its folders are its layers (docs/design.md): `formulas` (the decks'
formulas, their hand-derived gradients and the gradient check), `data`,
`training`, `evaluation` and `reports` (the only one that imports
matplotlib), and `studies`, the experiments' computations. At the top:
`ner` (a data directory made ready to train, parameter init, prediction),
`workdir` (run directories and the model files), `files` (atomic, verified
writes), `errors` and `timing`. Nothing here reads a flag.
"""
