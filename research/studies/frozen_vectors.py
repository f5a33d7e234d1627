"""Frozen vs fine-tuned word vectors as the training set grows.

The deck ("TV, telly, television"): when the word vectors are trained, the
words of the training data move while words seen only at test time stay where
pretraining put them, so with little training data fine-tuning should hurt
those test-only words; with much data fine-tuning should help. This study
trains the same model with L frozen and with L fine-tuned on nested
subsets of the training sentences and scores the dev entities overall and by
whether their words occur in the training subset:

Definitions (also written into the report):
* subset: for seed s, the first round(f * n) sentences of one fixed random
  permutation (seeded by s) of the n training sentences, in file order; the
  same for frozen and fine-tuned, nested across fractions.
* vocabulary: the subset's training words, plus every other word of the
  original vocabulary that has a pretrained vector (so dev words keep their
  pretrained vectors); training-only words without a vector that fall out of
  the subset map to <unk>, as if the vocabulary were built from the subset.
* a token is seen when its lowercased form occurs among the lowercased tokens
  of the training subset (any position, any tag). A chunk (gold or predicted)
  is 'seen' if all its tokens are seen, 'unseen' if none is, 'mixed' otherwise.
  Per group, P = correct / predicted chunks of the group and R = correct /
  gold chunks of the group; a correct chunk has the same tokens as its gold
  chunk, so it falls in the same group.
* training budget: every fraction gets about the optimizer steps of `epochs`
  passes over the full training split (so a fraction f runs about epochs / f
  passes over its subset), but at most `max_epochs` passes; the
  batch is shrunk to the subset's size when the subset has fewer windows.
"""

import math
import time

import numpy as np

from research import setup as setup_lib
from research.data import dataset as dataset_lib
from research.data import vocab as vocab_lib
from research.errors import UserError
from research.evaluation import metrics
from research.training import engine
from research.training import facade as training

GROUPS = ('unseen', 'mixed', 'seen')
MODES = ('frozen', 'fine-tuned')
NUM_EVALS = 5  # dev evaluations per run (progress and the dev curve)
PLOT_NAME = 'freeze_vs_finetune.png'


def subset_indices(num_sentences, fraction, seed):
  """A deterministic subset of sentence indices, sorted.

  The first max(1, round(fraction * num_sentences)) entries of one random
  permutation seeded by `seed`, so subsets of one seed are nested.

  Args:
    num_sentences: n, the number of training sentences.
    fraction: in (0, 1].
    seed: the permutation's seed.

  Returns:
    An int64 array of sorted indices into the training sentences.
  """
  if not 0 < fraction <= 1:
    raise ValueError(f'fraction must be in (0, 1], got {fraction}')
  count = min(num_sentences, max(1, round(fraction * num_sentences)))
  perm_n = np.random.default_rng(seed).permutation(num_sentences)
  return np.sort(perm_n[:count])


def subset_dataset(ds, sentence_ids):
  """The Dataset trained on only some training sentences (no re-reading).

  The vocabulary keeps the specials, the words of the subset's training
  windows and every word with a pretrained vector; the other words (training
  words without a vector, outside the subset) become <unk>. Every window thus
  reads the same words as with `Vocab.build` on the subset (the extra
  pretrained words of the rest of the training split are never looked up).
  Windows of every split are remapped to the new ids; initial vectors are the
  rows of `ds.L_init`.

  Args:
    ds: a dataset_lib.Dataset.
    sentence_ids: sorted indices into ds.splits['train'].

  Returns:
    A dataset_lib.Dataset with splits 'train' (the subset), 'dev' and 'test' if
    present.
  """
  sentence_ids = np.asarray(sentence_ids)
  train = ds.splits['train']
  train_windows = ds.windows['train']
  rank_n = np.full(len(train), -1, np.int64)
  rank_n[sentence_ids] = np.arange(len(sentence_ids))
  keep_windows = rank_n[train_windows.sentence_index] >= 0
  words_used = np.unique(train_windows.words[keep_windows])
  keep_V = np.array([w in ds.vocab.known for w in ds.vocab.words])
  keep_V[:3] = True  # PAD_LEFT, PAD_RIGHT, UNK
  keep_V[words_used] = True
  old_ids = np.flatnonzero(keep_V)
  new_id_V = np.full(len(ds.vocab), ds.vocab.index[vocab_lib.UNK], np.int32)
  new_id_V[old_ids] = np.arange(len(old_ids), dtype=np.int32)
  vocab = vocab_lib.Vocab([ds.vocab.words[i] for i in old_ids], ds.vocab.known)

  def remap(windows, mask=None):
    if mask is None:
      mask = np.ones(len(windows), bool)
    index = windows.sentence_index[mask]
    return vocab_lib.Windows(
      words=new_id_V[windows.words[mask]],
      casing=windows.casing[mask],
      labels=windows.labels[mask],
      sentence_index=(
        rank_n[index] if windows is train_windows else index
      ).astype(np.int32),
    )

  splits = {'train': [train[i] for i in sentence_ids]}
  windows = {'train': remap(train_windows, keep_windows)}
  for name in ('dev', 'test'):
    if name in ds.splits:
      splits[name] = ds.splits[name]
      windows[name] = remap(ds.windows[name])
  coverage = dict(
    ds.coverage, vocab_size=len(vocab), train_sentences=len(sentence_ids)
  )
  return dataset_lib.Dataset(
    splits, ds.tags, vocab, windows, ds.L_init[old_ids], coverage
  )


def training_words(sentences):
  """The lowercased tokens of some sentences, as a set."""
  return {t.lower() for s in sentences for t in s.tokens}


def chunk_group(tokens, seen_words):
  """'seen' (every token seen), 'unseen' (none) or 'mixed' (the rest).

  Args:
    tokens: the tokens of one chunk.
    seen_words: lowercased training tokens.
  """
  seen = [t.lower() in seen_words for t in tokens]
  if all(seen):
    return 'seen'
  return 'unseen' if not any(seen) else 'mixed'


def group_scores(sentences, pred_tags, seen_words):
  """Entity P/R/F1 overall and per seen/unseen/mixed group.

  Args:
    sentences: the scored `Sentence`s (gold tags and tokens).
    pred_tags: predicted tags, one list per sentence.
    seen_words: lowercased training tokens.

  Returns:
    {'overall': scores, 'unseen': ..., 'mixed': ..., 'seen': ...}, each
    {'precision', 'recall', 'f1', 'num_gold', 'num_pred', 'num_correct'}
    in conlleval's percent; the groups' counts add up to the overall ones.
  """
  gold, pred = set(), set()
  for i, (s, tags) in enumerate(zip(sentences, pred_tags, strict=True)):
    if len(tags) != len(s.tokens):
      raise ValueError(
        f'sentence {i}: {len(s.tokens)} tokens but {len(tags)} predicted tags'
      )
    gold.update((i, *c) for c in metrics.chunks(s.tags))
    pred.update((i, *c) for c in metrics.chunks(tags))

  def group(chunk):
    i, start, end, _ = chunk
    return chunk_group(sentences[i].tokens[start:end], seen_words)

  correct = gold & pred
  out = {'overall': metrics.prf(len(gold), len(pred), len(correct))}
  for g in GROUPS:
    out[g] = metrics.prf(
      *(sum(group(c) == g for c in spans) for spans in (gold, pred, correct))
    )
  return out


def budget(num_windows, full_windows, batch_size, epochs, max_epochs):
  """(epochs, batch size) for a subset: about the full run's steps.

  Args:
    num_windows: training windows of the subset.
    full_windows: training windows of the full split.
    batch_size: the requested batch size.
    epochs: passes over the full split.
    max_epochs: most passes over the subset.
  """
  batch = min(batch_size, num_windows)
  target_steps = epochs * max(1, full_windows // batch_size)
  steps_per_epoch = num_windows // batch
  return min(
    max_epochs, max(epochs, math.ceil(target_steps / steps_per_epoch))
  ), batch


def run_one(
  ds, fraction, seed, mode, *, model_cfg, cfg, lr, epochs, max_epochs, log=print
):
  """Trains one model on one subset; returns its result row.

  cfg: the classifier.TrainConfig of the full run (its batch size is shrunk
  for a small subset; freeze_embeddings is set by `mode`).
  """
  full_windows = len(ds.windows['train'])
  ids = subset_indices(len(ds.splits['train']), fraction, seed)
  sub = subset_dataset(ds, ids)
  run_epochs, batch = budget(
    len(sub.windows['train']), full_windows, cfg.batch_size, epochs, max_epochs
  )
  cfg = cfg._replace(freeze_embeddings=(mode == 'frozen'), batch_size=batch)
  steps = run_epochs * (len(sub.windows['train']) // batch)
  label = f'[fraction {fraction:g} {mode} seed {seed}]'
  log(
    f'{label} {len(ids):,} sentences / {len(sub.windows["train"]):,} '
    f'windows, vocabulary {len(sub.vocab):,}, {run_epochs} epochs of '
    f'batch {batch} ({steps:,} steps)'
  )
  t0 = time.perf_counter()
  setup = setup_lib.resolve(sub, model_cfg, cfg)
  params, result, _, history = training.train(
    setup,
    engine.Hyper(lr, 0.0),
    epochs=run_epochs,
    seed=seed,
    eval_every=max(1, steps // NUM_EVALS),
    log=lambda line: log(f'{label} {line.strip()}'),
  )
  curve = [
    {
      'step': row['step'],
      'dev_f1': row['dev']['f1'],
      'train_loss': row['train_loss'],
    }
    for row in history
  ]
  pred, _ = setup.predict(params, 'dev')
  scores = group_scores(
    sub.splits['dev'],
    dataset_lib.tags_by_sentence(pred, sub.splits['dev'], sub.tags),
    training_words(sub.splits['train']),
  )
  log(
    f'{label} dev F1 {scores["overall"]["f1"]:.2f}: '
    + ', '.join(
      f'{g} {scores[g]["f1"]:.2f} ({scores[g]["num_gold"]} gold)'
      for g in GROUPS
    )
    + f' [{time.perf_counter() - t0:.0f}s]'
  )
  return {
    'fraction': fraction,
    'seed': seed,
    'mode': mode,
    'train_sentences': len(ids),
    'train_windows': len(sub.windows['train']),
    'vocab_size': len(sub.vocab),
    'epochs': run_epochs,
    'batch_size': batch,
    'steps': result['steps'],
    'train_seconds': result['train_seconds'],
    'dev': scores,
    'dev_curve': curve,
  }


def check_fractions(fractions):
  """Raises a one-line UserError unless every fraction is in (0, 1]."""
  if not all(0 < f <= 1 for f in fractions):
    raise UserError(
      f'`fractions={",".join(map(str, fractions))}`: give fractions in (0, 1]'
    )


def run(
  ds, model_cfg, cfg, *, fractions, seeds, lr, epochs, max_epochs, log=print
):
  """Every (seed, fraction, mode); returns {'runs': [...], 'seconds'}."""
  check_fractions(fractions)
  runs, t0 = [], time.perf_counter()
  for seed in seeds:
    for f in fractions:
      for mode in MODES:
        runs.append(
          run_one(
            ds,
            f,
            seed,
            mode,
            model_cfg=model_cfg,
            cfg=cfg,
            lr=lr,
            epochs=epochs,
            max_epochs=max_epochs,
            log=log,
          )
        )
  return {'runs': runs, 'seconds': time.perf_counter() - t0}
