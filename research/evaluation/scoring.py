"""A split's scores: conlleval's entity P/R/F1 and token accuracy against
the file's tags, those of the entities unseen and seen in training, and the
bias against O chosen on dev."""

import dataclasses

import numpy as np

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
  ds = setup.ds
  pred, window_loss = setup.predict(params, split, o_bias)
  gold = gold_ids(ds, split)
  pred_N = gold.file_ids(ds, pred)
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
    written = tagschemes.convert_flat(
      pred_N, self.lengths, ds.tags, ds.file_scheme
    )
    index = {t: i for i, t in enumerate(self.tags)}
    return np.fromiter((index[t] for t in written), np.int64, len(written))


_GOLD = {}  # id(sentences) -> (sentences, Gold): training scores a split often


def gold_ids(ds, split):
  """The Gold of ds.splits[split] (remembered for the last few splits)."""
  sentences = ds.splits[split]
  cached = _GOLD.get(id(sentences))
  if cached is not None and cached[0] is sentences:
    return cached[1]
  if ds.tag_scheme == ds.file_scheme:
    model_tags = list(ds.tags)
  else:
    types = sorted({t[2:] for t in ds.tags if t != 'O'})
    model_tags = ['O'] + [f'{p}-{t}' for t in types for p in 'BIES']
  flat = [t for s in sentences for t in s.tags]
  tags = tuple(model_tags + sorted(set(flat) - set(model_tags)))
  index = {t: i for i, t in enumerate(tags)}
  gold = Gold(
    np.fromiter((index[t] for t in flat), np.int64, len(flat)),
    tags,
    sequence.sentence_lengths(sentences),
  )
  if len(_GOLD) >= 8:
    _GOLD.pop(next(iter(_GOLD)))
  _GOLD[id(sentences)] = (sentences, gold)
  return gold


_NOVELTY = {}  # ids of (split, train) -> (those lists, result)


def _remembered(objects, make):
  """make(), remembered for the last few tuples of `objects` (by identity:
  the lists of sentences of a Dataset)."""
  key = tuple(map(id, objects))
  cached = _NOVELTY.get(key)
  if cached is not None and all(a is b for a, b in zip(cached[0], objects)):
    return cached[1]
  if len(_NOVELTY) >= 8:
    _NOVELTY.pop(next(iter(_NOVELTY)))
  _NOVELTY[key] = (objects, make())
  return _NOVELTY[key][1]


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


def tune_o_bias(setup, params, biases=O_BIASES):
  """(the bias of `biases` that scores best on dev, {bias: dev scores}):
  the decoding bias against O (research.setup.predict) chosen on dev, the
  smallest of equal F1s."""
  scores = {b: evaluate(setup, params, 'dev', b) for b in biases}
  best = max(biases, key=lambda b: (scores[b]['f1'], -b))
  return best, scores
