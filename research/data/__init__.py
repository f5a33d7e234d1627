"""Data and features: what a corpus becomes before a model sees it.

CoNLL files and their splits (`conll`), tag schemes (`tagschemes`), the
vocabulary and word windows (`vocab`), pretrained vectors (`embeddings`),
word features (`features`, `gazetteer`) and the on-disk cache of loaded
datasets (`cache`).
"""
