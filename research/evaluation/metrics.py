"""Scores: entity-level P/R/F1 with conlleval's chunk semantics, and the
per-window detection scores of a binary decision (the window scorer's).

A tag is `O` or `PREFIX-TYPE` with PREFIX one of B, I, E, S; the type is
everything after the first hyphen (as in conlleval.pl since 2004-01-26, so
types may contain hyphens). A chunk (entity) starts and ends where conlleval's
`startOfChunk` / `endOfChunk` say so. Each sentence is scored as if followed by
an `O` tag, the way conlleval reads a blank line, so no chunk crosses a
sentence boundary. A predicted chunk is correct iff a gold chunk has the same
sentence, start, end and type.

On tags with prefixes B, I, O (IOB1, IOB2) and I, E, O (IOE1, IOE2) the rules
below are exactly those of conlleval.pl (version 2004-01-26). That script does
not know the S prefix and lets `B-X` continue a chunk after `E-X`, so on IOBES
tags it merges adjacent chunks of one type (`S-PER S-PER` is one chunk there).
For E and S we follow instead the IOBES extension of the widely used Python
port conlleval.py, which seqeval's default mode also uses (there
`S-PER S-PER` is two chunks). The perl's `[`, `]` and `.` tags are not
supported.
"""

import collections
from collections.abc import Sequence
import dataclasses
import functools
from typing import Any

import numpy as np

_PREFIXES = ('B', 'I', 'E', 'S')


def _split(tag: str) -> tuple[str, str]:
  """Splits a tag into (prefix, type); `O` gives ('O', '')."""
  if tag == 'O':
    return 'O', ''
  prefix, hyphen, type_ = tag.partition('-')
  if not hyphen or prefix not in _PREFIXES or not type_:
    raise ValueError(
      f'bad tag {tag!r}: expected O or B-, I-, E-, S- followed by a type'
    )
  return prefix, type_


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
  """conlleval's endOfChunk: did a chunk end just before the current tag?"""
  if prev_tag in ('E', 'S'):
    return True
  if prev_tag in ('B', 'I') and tag in ('B', 'S', 'O'):
    return True
  return prev_tag != 'O' and prev_type != type_


def _start_of_chunk(
  prev_tag: str, tag: str, prev_type: str, type_: str
) -> bool:
  """conlleval's startOfChunk: does a chunk start at the current tag?"""
  if tag in ('B', 'S'):
    return True
  if prev_tag in ('E', 'S', 'O') and tag in ('E', 'I'):
    return True
  return tag != 'O' and prev_type != type_


def chunks(tags: Sequence[str]) -> list[tuple[int, int, str]]:
  """Finds the chunks in one sentence's tags, with conlleval semantics.

  Args:
    tags: the tags of one sentence, e.g. ['B-PER', 'I-PER', 'O'].

  Returns:
    (start, end_exclusive, type) of each chunk, in order.

  Raises:
    ValueError: a tag is not `O` or B-, I-, E-, S- followed by a type.
  """
  found = []
  prev_tag, prev_type, start = 'O', '', 0
  # The closing 'O' is conlleval's sentence boundary: it ends any open chunk.
  for i, tag in enumerate([*tags, 'O']):
    cur_tag, cur_type = _split(tag)
    if _end_of_chunk(prev_tag, cur_tag, prev_type, cur_type):
      found.append((start, i, prev_type))
    if _start_of_chunk(prev_tag, cur_tag, prev_type, cur_type):
      start = i
    prev_tag, prev_type = cur_tag, cur_type
  return found


@dataclasses.dataclass(frozen=True)
class Score:
  """Chunk scores, in percent (0 to 100) as conlleval prints them.

  Attributes:
    precision: 100 * num_correct / num_pred, or 0 when num_pred is 0.
    recall: 100 * num_correct / num_gold, or 0 when num_gold is 0.
    f1: harmonic mean of precision and recall, or 0 when both are 0.
    num_gold: number of gold chunks.
    num_pred: number of predicted chunks.
    num_correct: number of predicted chunks that match a gold chunk.
  """

  precision: float
  recall: float
  f1: float
  num_gold: int
  num_pred: int
  num_correct: int


def _score(num_gold: int, num_pred: int, num_correct: int) -> Score:
  """Computes a Score from counts, with conlleval's formulas."""
  precision = 100.0 * num_correct / num_pred if num_pred else 0.0
  recall = 100.0 * num_correct / num_gold if num_gold else 0.0
  total = precision + recall
  f1 = 2.0 * precision * recall / total if total > 0 else 0.0
  return Score(precision, recall, f1, num_gold, num_pred, num_correct)


# Training evaluates the same sentences (and often the same predictions) many
# times: remember the chunks of recent tag sequences.
_cached_chunks = functools.lru_cache(maxsize=1 << 17)(chunks)


def _result(gold_types, pred_types, correct_types, accuracy):
  """evaluate's result from the types of the gold, predicted and correct
  chunks (one per chunk) and the token accuracy."""
  num_gold, num_pred, num_correct = (
    collections.Counter(types)
    for types in (gold_types, pred_types, correct_types)
  )
  per_type = {
    t: _score(num_gold[t], num_pred[t], num_correct[t])
    for t in sorted(num_gold.keys() | num_pred.keys())
  }
  return {
    'overall': _score(len(gold_types), len(pred_types), len(correct_types)),
    'per_type': per_type,
    'accuracy': accuracy,
  }


def evaluate(
  gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]
) -> dict[str, Any]:
  """Scores predicted tags against gold tags, like conlleval.

  Args:
    gold: the gold tags of each sentence.
    pred: the predicted tags of each sentence, one per gold tag.

  Returns:
    {'overall': Score, 'per_type': {type: Score} for every type seen in gold
    or pred, sorted by type, 'accuracy': percent of tokens (O included) whose
    predicted tag equals the gold tag, 0 when there are no tokens}.

  Raises:
    ValueError: the numbers of sentences differ, a sentence's gold and
      predicted tags differ in length (the message names the sentence index),
      or a tag is malformed.
  """
  if len(gold) != len(pred):
    raise ValueError(f'gold has {len(gold)} sentences but pred has {len(pred)}')
  gold_spans, pred_spans = set(), set()
  num_tokens = num_same = 0
  for i, (gold_tags, pred_tags) in enumerate(zip(gold, pred)):
    if len(gold_tags) != len(pred_tags):
      raise ValueError(
        f'sentence {i}: gold has {len(gold_tags)} tags but '
        f'pred has {len(pred_tags)}'
      )
    gold_spans.update((i, *span) for span in _cached_chunks(tuple(gold_tags)))
    pred_spans.update((i, *span) for span in _cached_chunks(tuple(pred_tags)))
    num_tokens += len(gold_tags)
    num_same += sum(g == p for g, p in zip(gold_tags, pred_tags))
  correct = gold_spans & pred_spans
  return _result(
    *(
      [span[3] for span in spans] for spans in (gold_spans, pred_spans, correct)
    ),
    100.0 * num_same / num_tokens if num_tokens else 0.0,
  )


# The same scores of one flat array of tag ids (the tokens of all sentences,
# in order): what training evaluates, many times, on a whole split.


@functools.lru_cache(maxsize=64)
def _pair_tables(tags: tuple[str, ...]):
  """conlleval's startOfChunk and endOfChunk for every (previous tag, tag)
  pair of ids into `tags` plus the boundary id len(tags) (an `O`, as after
  each sentence): (start [C+1, C+1] bool, end [C+1, C+1] bool, each id's
  type ('' for O) as an object array [C+1])."""
  parsed = [_split(t) for t in tags] + [('O', '')]
  start = np.array(
    [[_start_of_chunk(p, c, pt, ct) for c, ct in parsed] for p, pt in parsed]
  )
  end = np.array(
    [[_end_of_chunk(p, c, pt, ct) for c, ct in parsed] for p, pt in parsed]
  )
  return start, end, np.array([t for _, t in parsed], dtype=object)


def with_boundaries(ids_N: np.ndarray, lengths: Sequence[int], boundary: int):
  """ids_N with the id `boundary` after each sentence of `lengths` words:
  [N + len(lengths)], so that position p + i of the result is token p of the
  flat array when p is in sentence i."""
  return np.insert(np.asarray(ids_N), np.cumsum(lengths), boundary)


def without_boundaries(values_P, lengths: Sequence[int]):
  """values_P [N + len(lengths)] at `with_boundaries`'s positions, without
  the boundaries: [N]."""
  keep = np.ones(len(values_P), bool)
  keep[np.cumsum(lengths) + np.arange(len(lengths))] = False
  return values_P[keep]


def covered(start_M, end_M):
  """(the positions [P] inside the chunks [start, end), each chunk's in
  order; the chunk [P] of each)."""
  start_M = np.asarray(start_M)
  size_M = np.asarray(end_M) - start_M
  chunk = np.repeat(np.arange(len(size_M)), size_M)
  first = np.cumsum(size_M) - size_M  # each chunk's first index in the output
  return start_M[chunk] + np.arange(len(chunk)) - first[chunk], chunk


def flat_chunks(ids_N, lengths, tags):
  """The chunks (`chunks`) of sentences given as one flat array of tag ids.

  Args:
    ids_N: ids into `tags` of every token of every sentence, in order.
    lengths: the sentences' numbers of words (summing to N).
    tags: the tag of each id.

  Returns:
    (start [M], end [M] exclusive, type [M] object array) of each chunk, in
    order; positions count one boundary after each sentence
    (`with_boundaries`), so chunks of different sentences never share one.
  """
  tags = tuple(tags)
  start_PxC, end_PxC, types = _pair_tables(tags)
  seq = with_boundaries(ids_N, lengths, len(tags))
  prev = np.concatenate([[len(tags)], seq[:-1]])
  starts = np.flatnonzero(start_PxC[prev, seq])
  ends = np.flatnonzero(end_PxC[prev, seq])
  # The chunk that ends before position e opened at the last start before e.
  opened = starts[np.searchsorted(starts, ends) - 1]
  return opened, ends, types[seq[ends - 1]]


def sentence_counts(gold_N, pred_N, lengths, tags):
  """[S, 3] per sentence: its gold chunks, predicted chunks and correct ones
  (same start, end and type), of flat tag ids (`flat_chunks`); summed over
  sentences they are conlleval's counts."""
  ends_S = np.cumsum(lengths) + np.arange(len(lengths))  # with boundaries
  out_Sx3 = np.zeros((len(lengths), 3), np.int64)
  gold = flat_chunks(gold_N, lengths, tags)
  pred = flat_chunks(pred_N, lengths, tags)
  gold_keys = set(zip(*gold))
  correct_M = np.fromiter(
    (key in gold_keys for key in zip(*pred)), bool, len(pred[0])
  )
  for column, starts in ((0, gold[0]), (1, pred[0]), (2, pred[0][correct_M])):
    np.add.at(
      out_Sx3[:, column], np.searchsorted(ends_S, starts, side='right'), 1
    )
  return out_Sx3


def paired_bootstrap_f1(counts_BxSx3, resamples=1000, seed=0):
  """Entity F1 of each of B systems on `resamples` resamples of the S
  sentences (drawn with replacement, the same draw for every system:
  paired), from `sentence_counts` of each. Returns F1 [resamples, B] in
  percent."""
  B, S, _ = counts_BxSx3.shape
  rng = np.random.default_rng(seed)
  W_RxS = rng.multinomial(S, np.full(S, 1.0 / S), size=resamples)
  totals_RxBx3 = np.einsum('rs,bsk->rbk', W_RxS, counts_BxSx3)
  gold, pred, correct = np.moveaxis(totals_RxBx3.astype(np.float64), -1, 0)
  return 100.0 * 2.0 * correct / np.maximum(gold + pred, 1.0)


def evaluate_flat(gold_N, pred_N, lengths, tags) -> dict[str, Any]:
  """`evaluate` of tag ids: gold_N and pred_N are [N] ids into `tags` of
  the tokens of sentences of `lengths` words. Returns what `evaluate`
  returns for the same tags (tests/test_metrics.py checks both agree)."""
  gold_N, pred_N = np.asarray(gold_N), np.asarray(pred_N)
  if gold_N.shape != pred_N.shape or len(gold_N) != sum(lengths):
    raise ValueError(
      f'gold has {len(gold_N)} tags, pred {len(pred_N)}, the sentences '
      f'{sum(lengths)} words'
    )
  found = {}
  for name, ids in (('gold', gold_N), ('pred', pred_N)):
    start, end, type_ = flat_chunks(ids, lengths, tags)
    found[name] = (start * (len(ids) + len(lengths) + 1) + end, type_)
  (gold_key, gold_type), (pred_key, pred_type) = found['gold'], found['pred']
  is_correct = np.isin(pred_key, gold_key, assume_unique=True)
  correct_type = pred_type[is_correct]
  # A matching key (start, end) with another type is not a match.
  gold_type_at = dict(zip(gold_key.tolist(), gold_type.tolist()))
  keys = pred_key[is_correct].tolist()
  same = np.array(
    [gold_type_at[k] == t for k, t in zip(keys, correct_type)], bool
  )
  correct_type = correct_type[same] if len(keys) else correct_type
  accuracy = (
    100.0 * int(np.sum(gold_N == pred_N)) / len(gold_N) if len(gold_N) else 0.0
  )
  return _result(
    gold_type.tolist(), pred_type.tolist(), correct_type.tolist(), accuracy
  )


def _score_dict(score: Score) -> dict[str, Any]:
  return {
    'precision': float(score.precision),
    'recall': float(score.recall),
    'f1': float(score.f1),
    'num_gold': int(score.num_gold),
    'num_pred': int(score.num_pred),
    'num_correct': int(score.num_correct),
  }


def as_dict(result: dict[str, Any]) -> dict[str, Any]:
  """Turns an `evaluate` result into plain JSON-friendly data.

  Args:
    result: what `evaluate` returned.

  Returns:
    {'precision', 'recall', 'f1', 'num_gold', 'num_pred', 'num_correct' (all
    overall), 'accuracy', 'per_type': {type: {'precision', 'recall', 'f1',
    'num_gold', 'num_pred', 'num_correct'}}}.
  """
  out = _score_dict(result['overall'])
  out['accuracy'] = float(result['accuracy'])
  out['per_type'] = {
    t: _score_dict(score) for t, score in result['per_type'].items()
  }
  return out


def prf(num_gold: int, num_pred: int, num_correct: int) -> dict[str, Any]:
  """Percent precision, recall and F1 from counts, with the counts, as a dict.

  The one P/R/F1 of the project (conlleval's formulas): entity scores,
  seen/unseen groups and the window scorer's detection all use it.
  """
  return _score_dict(_score(num_gold, num_pred, num_correct))


def _score_line(score: Score) -> str:
  return (
    f'precision: {score.precision:6.2f}%; '
    f'recall: {score.recall:6.2f}%; FB1: {score.f1:6.2f}; '
    f'gold: {score.num_gold}; found: {score.num_pred}; '
    f'correct: {score.num_correct}'
  )


def format_table(result: dict[str, Any], title: str = '') -> str:
  """Formats an `evaluate` result as a compact conlleval-like table.

  Args:
    result: what `evaluate` returned.
    title: an optional first line.

  Returns:
    Text: the title (if any), an overall line with the token accuracy, then
    one line per type, without a trailing newline.
  """
  width = max([17, *map(len, result['per_type'])])
  lines = [title] if title else []
  lines.append(
    f'{"overall":>{width}}: accuracy: {result["accuracy"]:6.2f}%; '
    + _score_line(result['overall'])
  )
  for type_, score in result['per_type'].items():
    lines.append(f'{type_:>{width}}: ' + _score_line(score))
  return '\n'.join(lines)


# Binary detection (one decision per window, e.g. the window scorer's s > t).


def _cuts(s_N, gold_N):
  """Scores sorted descending, positives above each cut, and the cuts a
  threshold can make: after position i only where the next score is lower
  (a threshold cannot split windows of equal score)."""
  order = np.argsort(-s_N, kind='stable')
  sorted_N, hits = s_N[order], np.cumsum(gold_N[order])
  cut = np.append(sorted_N[1:] < sorted_N[:-1], True)
  return sorted_N, hits, np.flatnonzero(cut)


def average_precision(s_N, gold_N):
  """Area under the precision-recall curve, in percent (0 without
  positives): sum over thresholds of (recall gained) x precision, one
  threshold per distinct score, so tied windows count together."""
  s_N, gold_N = np.asarray(s_N), np.asarray(gold_N, bool)
  if not gold_N.any():
    return 0.0
  _, hits, cuts = _cuts(s_N, gold_N)
  precision = hits[cuts] / (cuts + 1)
  gained = np.diff(np.concatenate([[0], hits[cuts]]))
  return float(100.0 * np.sum(gained * precision) / gold_N.sum())


def detection_scores(s_N, gold_N, threshold=0.0):
  """Token-level precision/recall/F1 (percent) of `s > threshold`.

  Also 'ap' (`average_precision`), and 'best_f1' / 'best_threshold': the best
  F1 over all thresholds on these very windows and a threshold that gives it
  (midway between the last score taken and the next), for diagnosis or for
  choosing a threshold on dev.
  """
  s_N, gold_N = np.asarray(s_N), np.asarray(gold_N, bool)
  pred_N = s_N > threshold
  num_gold = int(gold_N.sum())
  out = prf(num_gold, int(pred_N.sum()), int((pred_N & gold_N).sum()))
  out.update(
    ap=average_precision(s_N, gold_N),
    best_f1=0.0,
    best_threshold=float(threshold),
  )
  if num_gold:
    sorted_N, hits, cuts = _cuts(s_N, gold_N)
    f1_at = 200.0 * hits[cuts] / (cuts + 1 + num_gold)
    best = int(cuts[np.argmax(f1_at)])
    below = sorted_N[best + 1] if best + 1 < len(s_N) else sorted_N[best] - 1
    out['best_f1'] = float(f1_at.max())
    out['best_threshold'] = float((sorted_N[best] + below) / 2)
  return out
