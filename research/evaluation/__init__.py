"""Evaluation: conlleval's scores, seen and unseen entities, tagging text.

`metrics` (entity P/R/F1 with conlleval's chunks), `scoring` (a split's
scores for a model), `novelty` (entities never seen in training),
`tagging` (a trained model tags sentences and files) and `tag_output`
(what evaluate and predict write).
"""
