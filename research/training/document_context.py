"""Document context: what a first pass tagged the same word elsewhere in
its document, as a word feature of a second pass.

A news article names an entity in full once ("Leicester City") and then
shortly ("Leicester"); a window of five words cannot see the other
mentions, so its tags of one word disagree across the article. The value
of the 'document' feature of a capitalized word is the entity type (or 'O')
that the first pass gave most of the word's other occurrences in the same
document (ties: the first in sorted order), and '' for a word with no other
occurrence or without a capital letter.

The first pass must not have trained on the sentences it tags, or its tags
of training sentences would be nearly perfect and the second pass would
trust them too much: research.training.two_passes trains two first-pass
models, each on half of the training documents, tags each half with the
other half's model, and tags dev, test and new text with both (scores
averaged).
"""

import numpy as np

from research.evaluation import metrics

NONE = ''


def domain(types):
  """Every value the feature takes, for a tag set of these entity types."""
  return [NONE, 'O', *sorted(types)]


def values(sentences, pred_N, tags):
  """The feature's value for every word: an object array [N] of str.

  sentences: data.Sentences (their `path` and `document` say which
  document each is in); pred_N: the first pass's tags of their N words, as
  ids into `tags`. A word's type is that of the chunk covering it
  (metrics.flat_chunks), 'O' outside; the types of a capitalized word's
  occurrences in its document are counted once for all words, its own
  taken out of its count.
  """
  lengths = [len(s.tokens) for s in sentences]
  start, end, type_M = metrics.flat_chunks(pred_N, lengths, tags)
  # Types in sorted order: argmax's first maximum is the first sorted.
  names = np.array(sorted({'O', *type_M.tolist()}), dtype=object)
  type_P = np.full(sum(lengths) + len(lengths), list(names).index('O'))
  position, chunk = metrics.covered(start, end)
  type_P[position] = np.searchsorted(names, type_M)[chunk]
  type_N = metrics.without_boundaries(type_P, lengths)
  words = {}  # word -> id
  docs = {}  # (path, document) -> id
  word_N = np.fromiter(
    (words.setdefault(w, len(words)) for s in sentences for w in s.tokens),
    np.int64,
    len(type_N),
  )
  doc_N = np.repeat(
    [docs.setdefault((s.path, s.document), len(docs)) for s in sentences],
    lengths,
  ).astype(np.int64)
  capital_W = np.fromiter((w[:1].isupper() for w in words), bool, len(words))
  (at,) = np.nonzero(capital_W[word_N])
  out = np.full(len(type_N), NONE, dtype=object)
  if not len(at):
    return out
  K = len(names)
  _, group = np.unique(doc_N[at] * len(words) + word_N[at], return_inverse=True)
  counts_GxK = np.bincount(
    group * K + type_N[at], minlength=(group.max() + 1) * K
  ).reshape(-1, K)
  others_AxK = counts_GxK[group]
  others_AxK[np.arange(len(at)), type_N[at]] -= 1  # the other occurrences
  best = np.argmax(others_AxK, axis=1)
  kept = others_AxK[np.arange(len(at)), best] > 0
  out[at[kept]] = names[best[kept]]
  return out


def window_column(sentence_index_N, k, token_ids_N, pad_id):
  """The [N, 2k+1] ids of a per-word feature at each window slot: a word's
  neighbour's id inside its sentence, `pad_id` past the sentence's ends."""
  N = len(sentence_index_N)
  offsets = np.arange(-k, k + 1)
  neighbour = np.arange(N)[:, None] + offsets[None, :]
  inside = (neighbour >= 0) & (neighbour < N)
  clipped = np.clip(neighbour, 0, max(N - 1, 0))
  same = inside & (sentence_index_N[clipped] == sentence_index_N[:, None])
  return np.where(same, token_ids_N[clipped], pad_id).astype(np.int32)
