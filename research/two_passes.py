"""Document context's two passes (research.document_context): two
first-pass models on halves of the training documents, their tags of each
word's other occurrences as a feature, and the model that reads them.

`research.ner.train_and_evaluate` comes here for a Dataset with the
'document' feature; a saved model holds the first pass's params under
FIRST_PASS (`split_first_pass`).
"""

import dataclasses
import time

import numpy as np

from research import document_context
from research import engine
from research import features as features_lib
from research import ner
from research import sequence
from research import vocab as vocab_lib

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
  )


def without_document(ds):
  """The Dataset of the first pass: the document feature dropped."""
  windows = {
    name: dataclasses.replace(w, feats=w.feats[..., :-1])
    for name, w in ds.windows.items()
  }
  return dataclasses.replace(
    ds, windows=windows, features=ds.features.without('document')
  )


def with_document_values(ds, values):
  """ds with the document feature of each split's windows set from
  `values` (split -> per-sentence lists, document_context.values)."""
  fv = ds.features
  offset, index = fv.offsets[-1], fv.index[-1]
  windows = {}
  for name, w in ds.windows.items():
    ids_N = np.asarray(
      [
        offset + index.get(v, features_lib.UNSEEN)
        for row in values[name]
        for v in row
      ],
      np.int32,
    )
    k = w.words.shape[1] // 2
    column = document_context.window_column(
      w.sentence_index, k, ids_N, offset + features_lib.PAD
    )
    feats = w.feats.copy()
    feats[..., -1] = column
    windows[name] = dataclasses.replace(w, feats=feats)
  return dataclasses.replace(ds, windows=windows, first_pass_done=True)


def first_pass_values(ds, models, model_cfg, objective, decode, halves):
  """The document feature's values of every split, from the first pass:
  training sentences of half h tagged by the model of the other half,
  every other split by both (an ensemble).

  models: the two first-pass params; halves: [n_train] 0/1 per sentence.
  """
  ds1 = without_document(ds)
  both = engine.stack(models)
  values = {}
  for name, sents in ds.splits.items():
    lengths = sequence.sentence_lengths(sents)
    if name == 'train':
      pred = np.zeros(len(ds.windows[name]), np.int32)
      for h in (0, 1):
        ids = np.flatnonzero(halves == h)
        sub = _windows_subset(ds1.windows[name], ids)
        sel = np.isin(ds1.windows[name].sentence_index, ids)
        pred[sel] = ner.predict_ids(
          models[1 - h],
          sub,
          [lengths[i] for i in ids],
          ds.tags,
          ds.tag_scheme,
          model_cfg,
          objective,
          decode,
        )
    else:
      pred = ner.predict_ids(
        both,
        ds1.windows[name],
        lengths,
        ds.tags,
        ds.tag_scheme,
        model_cfg,
        objective,
        decode,
      )
    values[name] = document_context.values(
      sents, ner.tags_by_sentence(pred, sents, ds.tags)
    )
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


def first_pass(
  ds,
  model_cfg,
  cfg,
  hyper,
  *,
  epochs,
  seed,
  log,
  decode,
  select,
  checkpoint=None,
):
  """The first pass: two models, each trained on half of the training
  documents (seeds seed + 1000, seed + 2000) without the document feature.
  Returns (ds with every split's document feature set from their tags, the
  two models stacked, a summary: each half's dev F1 and the seconds)."""
  t0 = time.perf_counter()
  ds1 = without_document(ds)
  train = ds.splits['train']
  halves = document_halves(train)
  models, first = [], {}
  for h in (0, 1):
    ids = np.flatnonzero(halves == h)
    part = dataclasses.replace(
      ds1,
      splits=dict(ds1.splits, train=[train[i] for i in ids]),
      windows=dict(
        ds1.windows, train=_windows_subset(ds1.windows['train'], ids)
      ),
    )
    log(f'first pass {h + 1}/2: training on {len(ids):,} sentences')
    params, result = ner.train_and_evaluate(
      part,
      model_cfg,
      cfg,
      hyper,
      epochs=epochs,
      seed=seed + 1000 * (h + 1),
      log=log,
      decode=decode,
      select=select,
      checkpoint=checkpoint and checkpoint.child(f'first_pass_{h + 1}'),
    )
    models.append(params)
    first[f'half_{h}_dev_f1'] = result['dev']['f1']
  values = first_pass_values(
    ds, models, model_cfg, cfg.objective, decode, halves
  )
  first['seconds'] = time.perf_counter() - t0
  log(
    f'first pass done in {first["seconds"]:.0f}s (dev F1 of the halves '
    f'{first["half_0_dev_f1"]:.2f}, {first["half_1_dev_f1"]:.2f})'
  )
  return with_document_values(ds, values), engine.stack(models), first


def train(ds, model_cfg, cfg, hyper, *, epochs, seed, log, **kw):
  """train_and_evaluate with the document feature: `first_pass`, then the
  model that reads its tags (see research.document_context)."""
  ds2, stacked, first = first_pass(
    ds,
    model_cfg,
    cfg,
    hyper,
    epochs=epochs,
    seed=seed,
    log=log,
    decode=kw['decode'],
    select=kw['select'],
    checkpoint=kw.get('checkpoint'),
  )
  log('second pass')
  params, result = ner.train_and_evaluate(
    ds2, model_cfg, cfg, hyper, epochs=epochs, seed=seed, log=log, **kw
  )
  result['first_pass'] = first
  params = dict(params, **{FIRST_PASS + k: v for k, v in stacked.items()})
  return params, result


def split_first_pass(params):
  """(the model's params, the stacked first-pass params or None)."""
  own = {k: v for k, v in params.items() if not k.startswith(FIRST_PASS)}
  first = {
    k[len(FIRST_PASS) :]: v
    for k, v in params.items()
    if k.startswith(FIRST_PASS)
  }
  return own, first or None
