"""A split's scores: conlleval's entity P/R/F1 and token accuracy against
the file's tags, those of the entities unseen and seen in training, and the
bias against O chosen on dev."""

import dataclasses

import numpy as np

from research.data import cache
from research.data import tagschemes
from research.evaluation import metrics
from research.evaluation import novelty
from research.training import sequence


def evaluate(setup, params, split, o_bias=0.0):
  """Entity P/R/F1 (conlleval) and token accuracy on a split of a
  research.setup.Setup's Dataset, against the file's tags; the P/R/F1 of its
  'unseen' and 'seen' entities (research/evaluation/novelty.py: whether an
  entity's surface string is one of the training split's; not of the
  training split itself, whose entities are all seen); and the mean window
  loss when the prediction is each window's argmax (setup.predict).
  o_bias: the decoding bias against O (research.setup.predict)."""
  gold, [(pred_N, loss)] = _predicted(setup, params, split, (o_bias,))
  return _scores(setup.ds, split, gold, pred_N, loss)


def _scores(ds, split, gold, pred_N, window_loss):
  """`evaluate`'s dict of a split's predicted ids [N] into gold.tags."""
  out = metrics.as_dict(
    metrics.evaluate_flat(gold.ids_N, pred_N, gold.lengths, gold.tags)
  )
  if 'train' in ds.splits and not split.startswith('train'):
    gold_chunks, seen_LxP = gold_novelty(ds, split)
    pred_chunks = metrics.flat_chunks(pred_N, gold.lengths, gold.tags)
    out.update(novelty.group_scores(gold_chunks, pred_chunks, seen_LxP))
  if window_loss is not None:
    out['loss'] = float(window_loss.mean())
  return out


def _predicted(setup, params, split, biases):
  """(the split's Gold, [(the predicted ids [N] into its tags, the window
  losses or None)] decoded with each bias against O of `biases`, from one
  forward pass: setup.predict_biases)."""
  gold = gold_ids(setup.ds, split)
  each = setup.predict_biases(params, split, biases)
  return gold, [(gold.file_ids(setup.ds, p), loss) for p, loss in each]


@dataclasses.dataclass(frozen=True, eq=False)
class Gold:
  """A split's file tags as one flat array: ids_N [N] into `tags` (the
  model's tags written in the file's scheme, then any other file tag), and
  the sentences' lengths."""

  ids_N: np.ndarray
  tags: tuple
  lengths: list

  def file_ids(self, ds, pred_N):
    """Predicted ids [N] into ds.tags as ids into self.tags, written in the
    file's scheme."""
    pred_N = np.asarray(pred_N)
    if ds.tag_scheme == ds.file_scheme:
      return pred_N  # ds.tags are self.tags' first ids
    code_N, written = tagschemes.convert_flat_codes(
      pred_N, self.lengths, ds.tags, ds.file_scheme
    )
    index = {t: i for i, t in enumerate(self.tags)}
    return np.asarray([index[t] for t in written], np.int64)[code_N]


_GOLD = cache.Recent()  # id(sentences) -> Gold: training scores a split often


def gold_ids(ds, split):
  """The Gold of ds.splits[split] (remembered for the last few splits)."""
  sentences = ds.splits[split]
  return _GOLD.get(id(sentences), lambda: _gold(ds, sentences), (sentences,))


def _gold(ds, sentences):
  """`gold_ids`'s Gold of a split's sentences."""
  if ds.tag_scheme == ds.file_scheme:
    model_tags = list(ds.tags)
  else:
    types = sorted({t[2:] for t in ds.tags if t != 'O'})
    model_tags = ['O'] + [f'{p}-{t}' for t in types for p in 'BIES']
  flat = [t for s in sentences for t in s.tags]
  tags = tuple(model_tags + sorted(set(flat) - set(model_tags)))
  index = {t: i for i, t in enumerate(tags)}
  return Gold(
    np.fromiter((index[t] for t in flat), np.int64, len(flat)),
    tags,
    sequence.sentence_lengths(sentences),
  )


_NOVELTY = cache.Recent()  # ids of (split, train) -> novelty's tables


def _remembered(objects, make):
  """make(), remembered for the last few tuples of `objects` (by identity:
  the lists of sentences of a Dataset)."""
  return _NOVELTY.get(tuple(map(id, objects)), make, objects)


def _training_entities(ds):
  """novelty.training_entities of ds's training split, from its chunks as
  one flat array (metrics.flat_chunks; a quarter of the time)."""
  gold = gold_ids(ds, 'train')
  start, end, _ = metrics.flat_chunks(gold.ids_N, gold.lengths, gold.tags)
  # Positions count one boundary after each sentence, as flat_chunks's.
  tokens_P = [t for s in ds.splits['train'] for t in (*s.tokens, None)]
  return novelty.Entities(
    tuple(tokens_P[a:b]) for a, b in zip(start.tolist(), end.tolist())
  )


def gold_novelty(ds, split):
  """(the gold chunks of ds.splits[split], as metrics.flat_chunks gives
  them; its novelty.Entities.table against the entities of ds.splits['train'])
  (remembered: a Dataset trained on a subset shares dev, not train)."""
  sentences, train = ds.splits[split], ds.splits['train']
  entities = _remembered((train,), lambda: _training_entities(ds))

  def make():
    gold = gold_ids(ds, split)
    chunks = metrics.flat_chunks(gold.ids_N, gold.lengths, gold.tags)
    return chunks, entities.table([s.tokens for s in sentences])

  return _remembered((sentences, train), make)


O_BIASES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)  # what tune_o_bias tries
RESAMPLES = 1000  # of the dev sentences, for tune_o_bias's interval
CONFIDENCE = 0.95  # of that interval


def tune_o_bias(setup, params, biases=O_BIASES, resamples=RESAMPLES, seed=0):
  """The decoding bias against O (research.setup.predict) chosen on dev,
  kept only when it beats the resampling noise.

  Each bias is scored on dev. Its gain over no bias is resampled by a
  paired bootstrap over the dev sentences (the same resamples for every
  bias: metrics.paired_bootstrap_f1): the candidate is the bias of the
  largest dev F1 (the smallest of equal ones), and it is kept only when the
  lower end of its gain's central CONFIDENCE interval is above 0; else the
  bias is 0.

  Returns (bias, {bias: dev scores}, {'candidate', 'gain' (dev F1 points,
  of the candidate over 0), 'interval' [low, high] of that gain,
  'resamples', 'confidence'}).
  """
  biases = tuple(sorted(set(biases) | {0.0}))
  scores, counts = {}, []
  gold, each = _predicted(setup, params, 'dev', biases)
  for b, (pred_N, loss) in zip(biases, each):
    scores[b] = _scores(setup.ds, 'dev', gold, pred_N, loss)
    counts.append(
      metrics.sentence_counts(gold.ids_N, pred_N, gold.lengths, gold.tags)
    )
  f1_B = [scores[b]['f1'] for b in biases]
  bias, test = bias_rule(biases, f1_B, np.stack(counts), resamples, seed)
  return bias, scores, test


def bias_rule(biases, f1_B, counts_BxSx3, resamples=RESAMPLES, seed=0):
  """`tune_o_bias`'s rule: (the bias kept, the test) of the B biases (the
  first 0) with dev F1 f1_B and per-sentence counts
  (metrics.sentence_counts): the bias of the largest F1 (the smallest of
  equal ones), kept when the lower end of the central CONFIDENCE interval
  of its paired-bootstrap gain over the first is above 0, else 0."""
  biases = tuple(biases)
  best = max(range(len(biases)), key=lambda i: (f1_B[i], -biases[i]))
  f1_RxB = metrics.paired_bootstrap_f1(counts_BxSx3, resamples, seed)
  gain_R = f1_RxB[:, best] - f1_RxB[:, 0]
  tail = 100.0 * (1.0 - CONFIDENCE) / 2.0
  low, high = np.percentile(gain_R, [tail, 100.0 - tail])
  test = {
    'candidate': biases[best],
    'gain': float(f1_B[best] - f1_B[0]),
    'interval': [float(low), float(high)],
    'resamples': resamples,
    'confidence': CONFIDENCE,
  }
  return (biases[best] if low > 0 else 0.0), test
