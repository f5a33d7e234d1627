r"""Ablation: each part of the strong model added to the default, and removed.

  ./launch.sh ablation --data_dir=../shared/data/conll2003 --workdir=runs/abl
  ./launch.sh ablation --rows=beyond --data_dir=../shared/data/conll2003 \
      --cross_data=data/wikigold/wikigold.conll.txt --workdir=runs/gen

The rows are research/studies/ablation.py's ADDED, REMOVED and BEYOND: they
set the objective, batch size, epochs, tag scheme, features, dropout,
selection, decoding, hidden units, nonlinearity, word dropout, ensemble,
the bias against O and the model; the settings they do not vary (data,
vectors, optimizer, lr, window, ...) come from the flags (--help lists
them). Every row reports dev precision, recall, unseen-entity F1, the F1
of dev lowercased and, with --cross_data, the F1 on another corpus.
Writes into --workdir: flags.txt, results.json, results.csv, report.md,
ablation.png.
"""

import dataclasses

from absl import flags

from experiments import _configs
from experiments import _flag_spec
from experiments import _flags
from experiments import _run
from research.evaluation import novelty
from research.evaluation import tagging
from research.reports import ablation as ablation_report
from research.studies import ablation
from research.training import engine

_flag_spec.use(
  ('data_dir', 'data_cache', 'embeddings', 'vocab', 'embed_dim'),
  ('affix_length', 'case_augment'),
  ('gazetteer', 'window', 'feature_dim'),
  ('char_dim', 'char_filters', 'char_width', 'dilation_layers'),
  ('block_repeats',),
  ('optimizer', 'lr', 'lr_decay', 'l2_embeddings', 'l2_biases'),
  ('freeze_embeddings',),
  ('sparse', 'grad', 'word_dropout'),
  _flags.RUN_DIR,
  _flags.DEVICES,
)
_SEEDS = _flag_spec.define_list(
  'seeds', _flags.SEED, ['0', '1', '2'], 'Seeds of every row.'
)
_ROWS = flags.DEFINE_enum(
  'rows',
  'all',
  ['all', 'added', 'removed', 'beyond'],
  "Which path of rows to train ('beyond': the full model, then each row "
  'of research/studies/ablation.py BEYOND).',
)
_CROSS_DATA = flags.DEFINE_string(
  'cross_data',
  '',
  'A CoNLL file of another corpus with the same entity types (e.g. '
  'data/wikigold/wikigold.conll.txt): every model is also scored there, '
  "tagged as evaluate does ('' for none).",
)


def scores_of(sentences_of):
  """An ablation.run scorer: the scores of the sentences_of(ds), tagged by
  each trained model as `evaluate` tags them, with the unseen and seen
  entities of the model's training split apart."""

  def score(setup, params, o_bias):
    ds = setup.ds
    config = setup.config_json(o_bias)
    model = tagging.from_parts(params, ds.vocab, ds.tags, config)
    entities = novelty.training_entities(ds.splits['train'])
    return tagging.evaluate(model, sentences_of(ds), entities).scores

  return score


def lowercased_dev(ds):
  """The dev sentences with every word lowercased."""
  return [
    dataclasses.replace(s, tokens=tuple(t.lower() for t in s.tokens))
    for s in ds.splits['dev']
  ]


def main(_):
  workdir = _run.workdir('ablation')
  seeds = _flag_spec.items(_SEEDS)

  def load(features, tag_scheme, case_augment):
    return _configs.load_dataset(
      features=features, tag_scheme=tag_scheme, case_augment=case_augment
    )

  scorers = {'lowercased': scores_of(lowercased_dev)}
  if _CROSS_DATA.value:
    cross = tagging.read_sentences(_CROSS_DATA.value)
    scorers['cross'] = scores_of(lambda _: cross)
  # The rows set these (the values here are replaced).
  row_set = ablation.Setting()
  results = ablation.run(
    load,
    _configs.model_config(
      hidden=row_set.hidden,
      dropout=row_set.dropout,
      nonlinearity=row_set.nonlinearity,
      model=row_set.model,
    ),
    _configs.train_config(batch_size=row_set.batch_size),
    engine.Hyper(_flags.LR.value, 0.0),
    seeds,
    rows=_ROWS.value,
    scorers=scorers,
    log=_run.log,
    events_dir=workdir / 'events',
  )
  table = ablation_report.write_outputs(
    workdir, results, data_dir=_flags.DATA_DIR.value, seeds=seeds
  )
  _run.log(f'\n{table}\nwrote {workdir}/report.md')


if __name__ == '__main__':
  _run.run(main)
