"""Document context's two passes (research.training.document_context): two
first-pass models on halves of the training documents, their tags of each
word's other occurrences as a feature, and the model that reads them.

`prepare` is a transform of a Dataset (research.training.facade.train applies it
when asked for document context): the Dataset it returns has the document
feature as the last kind of its feature vocabulary and the last column of its
windows' features. A saved model holds the first pass's params under FIRST_PASS
(`split_first_pass`); research.evaluation.tagging builds the column for new text
with the same `with_document_column`."""

import dataclasses
import time
from typing import NamedTuple

import numpy as np

from research.data import features as features_lib
from research.data import vocab as vocab_lib
from research.training import document_context
from research.training import engine
from research.training import sequence

FIRST_PASS = 'first_pass/'  # prefix of the first-pass params in a model


def _windows_subset(w, sentence_ids):
  """The windows of some sentences (sorted ids), renumbered from 0."""
  sel = np.isin(w.sentence_index, sentence_ids)
  remap = np.full(int(w.sentence_index.max(initial=0)) + 1, -1, np.int32)
  remap[sentence_ids] = np.arange(len(sentence_ids), dtype=np.int32)
  return vocab_lib.Windows(
    w.words[sel],
    w.casing[sel],
    w.labels[sel],
    remap[w.sentence_index[sel]],
    None if w.feats is None else w.feats[sel],
    None if w.chars is None else w.chars[sel],
  )


def document_vocab(ds):
  """ds's feature vocabulary with the document kind added last (its
  values: document_context.domain of the tag set's entity types)."""
  types = sorted({t[2:] for t in ds.tags if t != 'O'})
  values = document_context.domain(types)
  vocab = ds.features or features_lib.FeatureVocab((), 3, (), (), 0)
  return vocab.with_kind('document', values)


def with_document_column(windows, vocab, values):
  """Windows (of sentences) with the document feature's column appended:
  `values` holds the value of each word of the sentences [N]
  (document_context.values),
  `vocab` the feature vocabulary with the document kind last. The one
  featuriser of the document feature, for training and for new text."""
  offset, index = vocab.offsets[-1], vocab.index[-1]
  values = np.asarray(values, dtype=object)
  names, code_N = np.unique(values.astype(str), return_inverse=True)
  id_V = [offset + index.get(v, features_lib.UNSEEN) for v in names]
  ids_N = np.asarray(id_V, np.int32)[code_N.reshape(-1)]
  k = windows.words.shape[1] // 2
  column = document_context.window_column(
    windows.sentence_index, k, ids_N, offset + features_lib.PAD
  )
  feats = (
    column[..., None]
    if windows.feats is None
    else np.concatenate([windows.feats, column[..., None]], axis=-1)
  )
  return dataclasses.replace(windows, feats=feats)


def first_pass_values(setup, models, halves):
  """The document feature's values of every split of setup.ds (a
  research.setup.Setup of the first pass), from the first pass: training
  sentences of half h tagged by the model of the other half, every other
  split by both (an ensemble).

  models: the two first-pass params; halves: [n_train] 0/1 per sentence.
  """
  ds = setup.ds
  both = engine.stack(models)

  def predict(params, windows, lengths):
    return setup.predict_windows(params, windows, lengths)[0][0]

  values = {}
  for name, sents in ds.splits.items():
    lengths = sequence.sentence_lengths(sents)
    if name == 'train':
      pred = np.zeros(len(ds.windows[name]), np.int32)
      for h in (0, 1):
        ids = np.flatnonzero(halves == h)
        sub = _windows_subset(ds.windows[name], ids)
        sel = np.isin(ds.windows[name].sentence_index, ids)
        pred[sel] = predict(models[1 - h], sub, [lengths[i] for i in ids])
    else:
      pred = predict(both, ds.windows[name], lengths)
    values[name] = document_context.values(sents, pred, ds.tags)
  return values


def document_halves(sentences):
  """0/1 per sentence: the half its document goes to (alternating); the
  sentences alternate when there is only one document."""
  order = {}
  for s in sentences:
    order.setdefault((s.path, s.document), len(order))
  if len(order) < 2:
    return np.arange(len(sentences)) % 2
  return np.asarray([order[(s.path, s.document)] % 2 for s in sentences])


def with_unread_document(ds):
  """ds with the document feature as it reads before any first pass:
  NONE for every word (the second pass's data shapes, e.g. for timing)."""
  vocab = document_vocab(ds)
  windows = {
    name: with_document_column(
      w,
      vocab,
      np.full(len(w.words), document_context.NONE, dtype=object),
    )
    for name, w in ds.windows.items()
  }
  return dataclasses.replace(ds, windows=windows, features=vocab)


class FirstPass(NamedTuple):
  params: dict  # the two first-pass models, stacked
  summary: dict  # each half's dev F1, the seconds


def prepare(setup, train_fn, log=print):
  """Document context as a transform of the Dataset setup.ds (of a
  research.setup.Setup of one model, the first pass's): two first-pass
  models, each trained on half of the training documents by `train_fn(part,
  half) -> (params, result)`, tag every split (training sentences by the
  other half's model, the rest by both); returns (ds with the document
  feature, FirstPass)."""
  t0 = time.perf_counter()
  ds = setup.ds
  train = ds.splits['train']
  halves = document_halves(train)
  models, summary = [], {}
  for h in (0, 1):
    ids = np.flatnonzero(halves == h)
    part = dataclasses.replace(
      ds,
      splits=dict(ds.splits, train=[train[i] for i in ids]),
      windows=dict(ds.windows, train=_windows_subset(ds.windows['train'], ids)),
    )
    log(f'first pass {h + 1}/2: training on {len(ids):,} sentences')
    params, result = train_fn(part, h)
    models.append(params)
    summary[f'half_{h}_dev_f1'] = result['dev']['f1']
  values = first_pass_values(setup, models, halves)
  vocab = document_vocab(ds)
  windows = {
    name: with_document_column(w, vocab, values[name])
    for name, w in ds.windows.items()
  }
  summary['seconds'] = time.perf_counter() - t0
  log(
    f'first pass done in {summary["seconds"]:.0f}s (dev F1 of the halves '
    f'{summary["half_0_dev_f1"]:.2f}, {summary["half_1_dev_f1"]:.2f})'
  )
  ds = dataclasses.replace(ds, windows=windows, features=vocab)
  return ds, FirstPass(engine.stack(models), summary)


def with_first_pass(params, first_pass_params):
  """A saved model's params: its own and the first pass's (FIRST_PASS)."""
  return dict(
    params, **{FIRST_PASS + k: v for k, v in first_pass_params.items()}
  )


def split_first_pass(params):
  """(the model's params, the stacked first-pass params or None)."""
  own = {k: v for k, v in params.items() if not k.startswith(FIRST_PASS)}
  first = {
    k[len(FIRST_PASS) :]: v
    for k, v in params.items()
    if k.startswith(FIRST_PASS)
  }
  return own, first or None
