"""Seen and unseen entities: scores on names a model never trained on.

Definitions:
* an entity's surface string is the token sequence of its chunk
  (`metrics.chunks`), compared exactly: case-sensitive, token by token
  ('New York' and 'new York' differ; so do the one token 'New York' of a
  tab-separated file and the two tokens 'New', 'York').
* the training entities are the surface strings of every gold chunk of the
  training sentences, of any type.
* a chunk, gold or predicted, is 'seen' when its surface string is a
  training entity, whatever type it had there (a 'Jordan' trained as PER is
  seen when it is a LOC in dev), and 'unseen' otherwise. A predicted chunk
  is grouped by its own surface string, so a correct prediction falls in the
  group of the gold chunk it matches.
* per group, precision = correct / predicted chunks of the group and recall
  = correct / gold chunks of the group (`metrics.prf`); the two groups'
  counts add up to the overall ones.

(The freeze_vs_finetune study groups entities by their words instead,
lowercased, seen anywhere in training: research/studies/frozen_vectors.py.)

Scoring is vectorized: a split's tokens are matched once against a trie of
the training entities (`Entities.table`), which gives seen_LxP[l, p]: whether
the l tokens from position p (positions of `metrics.with_boundaries`) are a
training entity; each chunk is then one lookup.
"""

import numpy as np

from research.evaluation import metrics

GROUPS = ('unseen', 'seen')
_BOUNDARY = -1  # the token id after each sentence (and of unknown tokens)


class Entities:
  """The training entities' surface strings, as a trie over token ids."""

  def __init__(self, strings):
    """strings: surface strings, each a sequence of tokens (not empty)."""
    self.strings = frozenset(tuple(s) for s in strings)
    self.token_ids = {}
    edges = {}  # (node, token id) -> child node; the root is node 0
    final = [False]
    for string in self.strings:
      node = 0
      for token in string:
        t = self.token_ids.setdefault(token, len(self.token_ids))
        if (node, t) not in edges:
          edges[node, t] = len(final)
          final.append(False)
        node = edges[node, t]
      final[node] = True
    keys_E = np.array([n * len(self.token_ids) + t for n, t in edges], int)
    order_E = np.argsort(keys_E)
    self._keys_E = keys_E[order_E]
    self._child_E = np.array(list(edges.values()), int)[order_E]
    self._final_Q = np.array(final)

  def __len__(self):
    return len(self.strings)

  def table(self, tokens):
    """seen_LxP [L, P] bool of sentences' tokens: seen_LxP[l, p] says
    whether the l tokens from position p are a training entity, positions
    counting one boundary after each sentence (`metrics.with_boundaries`);
    row 0 is False and L - 1 is the longest match.

    Args:
      tokens: the tokens of each sentence.
    """
    ids = self.token_ids
    flat_N = np.fromiter(
      (ids.get(t, _BOUNDARY) for s in tokens for t in s), int
    )
    tok_P = metrics.with_boundaries(flat_N, [len(s) for s in tokens], _BOUNDARY)
    P, E = len(tok_P), len(self._keys_E)
    rows = [np.zeros(P, bool)]
    # Walk the trie from every start at once, keeping the starts still on it
    # (start_A, at node_A). The boundary after the last sentence ends every
    # walk before it runs off the end.
    start_A, node_A = np.arange(P), np.zeros(P, int)
    while len(start_A) and E:
      tok_A = tok_P[np.minimum(start_A + len(rows) - 1, P - 1)]
      key_A = node_A * len(ids) + tok_A
      i_A = np.minimum(np.searchsorted(self._keys_E, key_A), E - 1)
      hit_A = (tok_A != _BOUNDARY) & (self._keys_E[i_A] == key_A)
      start_A, node_A = start_A[hit_A], self._child_E[i_A[hit_A]]
      if not len(start_A):
        break
      rows.append(np.zeros(P, bool))
      rows[-1][start_A] = self._final_Q[node_A]
    return np.stack(rows)


def training_entities(sentences):
  """The Entities of labelled sentences: every gold chunk's tokens."""
  return Entities(
    s.tokens[start:end]
    for s in sentences
    for start, end, _ in metrics.chunks(s.tags)
  )


def is_seen(seen_LxP, start_M, end_M):
  """[M] bool: whether each chunk (positions as in `Entities.table`) is a
  training entity."""
  start_M = np.asarray(start_M)
  length_M = np.asarray(end_M) - start_M
  out_M = np.zeros(len(start_M), bool)
  fits = length_M < len(seen_LxP)
  out_M[fits] = seen_LxP[length_M[fits], start_M[fits]]
  return out_M


def sentence_chunks(tags):
  """(start [M], end [M], type [M]) of the chunks of sentences' tags, with
  the positions of `metrics.with_boundaries` (as `metrics.flat_chunks`)."""
  found = []
  offset = 0
  for sentence in tags:
    found += [
      (offset + a, offset + b, t) for a, b, t in metrics.chunks(sentence)
    ]
    offset += len(sentence) + 1
  start_M = np.array([c[0] for c in found], int)
  end_M = np.array([c[1] for c in found], int)
  return start_M, end_M, np.array([c[2] for c in found], object)


def correct(gold, pred):
  """[K] bool: whether each predicted chunk is a gold chunk (same start,
  end and type). gold, pred: (start, end, type) arrays in order, as
  `metrics.flat_chunks` gives them."""
  gold_start, gold_end, gold_type = gold
  pred_start, pred_end, pred_type = pred
  if not len(gold_start):
    return np.zeros(len(pred_start), bool)
  width = int(max(gold_end.max(initial=0), pred_end.max(initial=0))) + 1
  gold_key_M = gold_start * width + gold_end  # increasing: chunks in order
  pred_key_K = pred_start * width + pred_end
  i_K = np.minimum(np.searchsorted(gold_key_M, pred_key_K), len(gold_key_M) - 1)
  return (gold_key_M[i_K] == pred_key_K) & (gold_type[i_K] == pred_type)


def group_scores(gold, pred, seen_LxP):
  """P/R/F1 of the unseen and the seen entities (see the module doc).

  Args:
    gold: the gold chunks, (start [M], end [M], type [M]), as
      `metrics.flat_chunks` or `sentence_chunks` give them.
    pred: the predicted chunks, alike.
    seen_LxP: `Entities.table` of the same sentences.

  Returns:
    {'unseen': metrics.prf(...), 'seen': metrics.prf(...)}.
  """
  gold_seen_M = is_seen(seen_LxP, gold[0], gold[1])
  pred_seen_K = is_seen(seen_LxP, pred[0], pred[1])
  correct_K = correct(gold, pred)
  return {
    group: metrics.prf(
      int(np.sum(gold_seen_M == want)),
      int(np.sum(pred_seen_K == want)),
      int(np.sum(correct_K & (pred_seen_K == want))),
    )
    for group, want in zip(GROUPS, (False, True))
  }


def scores(tokens, gold_tags, pred_tags, entities):
  """`group_scores` of sentences given as lists: their tokens, gold tags
  and predicted tags, against `entities` (an Entities)."""
  return group_scores(
    sentence_chunks(gold_tags),
    sentence_chunks(pred_tags),
    entities.table(tokens),
  )
