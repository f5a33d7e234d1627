"""Vocabulary, casing features and word windows as int arrays.

From the `Sentence`s of research/data/conll.py: `Vocab.build` maps normalized
tokens to rows of L, `casing_id` gives each token its casing class, and
`make_windows` cuts every sentence into windows of 2k+1 word ids, padded with
<s>/</s> at its boundaries.
"""

import collections
import dataclasses
import re

import numpy as np

from research.data import features as features_lib
from research.errors import UserError
from research.formulas import chars as chars_lib

PAD_LEFT, PAD_RIGHT, UNK = '<s>', '</s>', '<unk>'

CASINGS = (
  '<pad>',
  'lower',
  'upper',
  'title',
  'mixed',
  'numeric',
  'has_digit',
  'other',
)
_DIGIT = re.compile(r'\d')
_NUMERIC = re.compile(r'[\d,./-]*\d[\d,./-]*')


def casing_id(token):
  """Returns the casing feature id of a token (an index into CASINGS).

  Digits decide first: 'numeric' if the token is only digits and , . - /,
  otherwise 'has_digit' if it has any digit. Else the cased letters decide,
  other characters (hyphens, apostrophes, dots, symbols) being ignored: 'lower'
  (all lowercase), 'upper' (all uppercase, more than one letter: 'U.S.'),
  'title' (first uppercase, rest lowercase; also a single capital 'I'),
  'mixed' (iPhone, McDonald). Tokens without digits or cased letters (e.g.
  punctuation) are 'other'. Id 0 ('<pad>') is only used for window padding.

  Args:
    token: The word.

  Returns:
    The casing id, in 1..7.
  """
  if _DIGIT.search(token):
    numeric = _NUMERIC.fullmatch(token)
    return CASINGS.index('numeric' if numeric else 'has_digit')
  letters = [c for c in token if c.islower() or c.isupper()]
  if not letters:
    return CASINGS.index('other')
  if all(c.islower() for c in letters):
    return CASINGS.index('lower')
  if len(letters) > 1 and all(c.isupper() for c in letters):
    return CASINGS.index('upper')
  if letters[0].isupper() and all(c.islower() for c in letters[1:]):
    return CASINGS.index('title')
  return CASINGS.index('mixed')


def fold_digits(s):
  """Returns `s` with every digit replaced by '0'."""
  return _DIGIT.sub('0', s)


def normalize(token, known=frozenset()):
  """Normalizes a token for vocabulary lookup.

  Lowercases; if the lowercased form is not in `known` (the pretrained
  vocabulary, e.g. GloVe's words), folds digits to 0 ('1996-08-22' ->
  '0000-00-00' unless '1996-08-22' is a known word).

  Args:
    token: The word.
    known: Words to keep as they are after lowercasing.

  Returns:
    The normalized word.
  """
  lower = token.lower()
  return lower if lower in known else fold_digits(lower)


def consulted(known):
  """The words of `known` that `normalize` can tell apart from the others:
  those holding a digit (a word without one normalizes alike, known or
  not), sorted. What a saved model keeps of the pretrained words."""
  return sorted(w for w in known if _DIGIT.search(w))


class Vocab:
  """A word vocabulary: ids 0, 1, 2 are PAD_LEFT, PAD_RIGHT and UNK.

  Attributes:
    words: The words by id; words[0:3] == [PAD_LEFT, PAD_RIGHT, UNK].
    index: Word -> id.
    known: Pretrained words, used by `normalize`.
  """

  def __init__(self, words, known=frozenset()):
    """Makes a vocabulary of normalized `words`, specials first."""
    self.words = list(words)
    if self.words[:3] != [PAD_LEFT, PAD_RIGHT, UNK]:
      raise ValueError(f'words must start with {[PAD_LEFT, PAD_RIGHT, UNK]}')
    self.index = {word: i for i, word in enumerate(self.words)}
    if len(self.index) != len(self.words):
      raise ValueError('words has duplicates')
    self.known = frozenset(known)

  def __len__(self):
    return len(self.words)

  def lookup(self, token):
    """Returns the id of normalize(token, known), or the UNK id 2."""
    return self.index.get(normalize(token, self.known), 2)

  @classmethod
  def build(
    cls,
    train_sentences,
    other_sentences=(),
    pretrained=frozenset(),
    min_count=1,
    all_pretrained=False,
  ):
    """Builds the vocabulary of a corpus.

    Words: normalized training words with count >= min_count, plus training
    words of any count that are in `pretrained`, plus normalized words of
    `other_sentences` (dev/test) that are in `pretrained` (so their pretrained
    vectors are used; labels are not looked at), plus every pretrained word if
    `all_pretrained`. Order: the 3 specials, the training words with count >=
    min_count by descending count (ties alphabetically), then the rest
    alphabetically.

    Args:
      train_sentences: Training `Sentence`s.
      other_sentences: Dev/test `Sentence`s (only their tokens are used).
      pretrained: The words that have pretrained vectors.
      min_count: The training count below which non-pretrained words are
        left out (and so map to UNK).
      all_pretrained: Whether to add every pretrained word.

    Returns:
      The `Vocab`, with `known` set to `pretrained`.
    """
    known = frozenset(pretrained)
    specials = (PAD_LEFT, PAD_RIGHT, UNK)
    counts = collections.Counter(
      normalize(t, known) for s in train_sentences for t in s.tokens
    )
    frequent = sorted(
      (w for w, c in counts.items() if c >= min_count and w not in specials),
      key=lambda w: (-counts[w], w),
    )
    rest = {w for w in counts if w in known}
    rest.update(
      w
      for s in other_sentences
      for t in s.tokens
      if (w := normalize(t, known)) in known
    )
    if all_pretrained:
      rest.update(known)
    rest -= set(frequent) | set(specials)
    return cls([*specials, *frequent, *sorted(rest)], known)


@dataclasses.dataclass(frozen=True, eq=False)
class Windows:
  """Word windows, one per token.

  Attributes:
    words: [N, 2k+1] int32 word ids; column k is the center word.
    casing: [N, 2k+1] int32 casing ids (0 for padding).
    labels: [N] int32 tag ids.
    sentence_index: [N] int32: the sentence of each window's center word.
    feats: [N, 2k+1, F] int32 rows of L_feat (research.data.features), or None.
    chars: [N, P] int32 character ids of each center word's spelling
      (research.formulas.chars.CharVocab.encode), or None.
  """

  words: np.ndarray
  casing: np.ndarray
  labels: np.ndarray
  sentence_index: np.ndarray
  feats: np.ndarray | None = None
  chars: np.ndarray | None = None

  def __len__(self):
    return len(self.labels)


def make_windows(
  sentences,
  vocab,
  tags,
  k=2,
  feature_vocab=None,
  feature_context=None,
  char_vocab=None,
):
  """Makes one window of half-width k around every token.

  Windows stop at sentence boundaries: positions before the sentence hold
  PAD_LEFT (id 0), after it PAD_RIGHT (id 1), with casing id 0 for both
  (and the padding rows of the features).

  Args:
    sentences: `Sentence`s.
    vocab: The `Vocab` for word ids.
    tags: The tag list (tag id = position), as from `check_tags`.
    k: The half-width, >= 0 (k=0: the word alone).
    feature_vocab: an optional research.data.features.FeatureVocab.
    feature_context: the gazetteer values of each sentence (if it has one).
    char_vocab: an optional research.formulas.chars.CharVocab: each word spelled
      (its first chars.MAX_LEN characters).

  Returns:
    The `Windows`.

  Raises:
    UserError: A tag is not in `tags`.
  """
  if k < 0:
    raise ValueError(f'k must be >= 0, got {k}')
  tag_ids = {tag: i for i, tag in enumerate(tags)}
  flat_tags = [t for s in sentences for t in s.tags]
  if not set(flat_tags) <= tag_ids.keys():
    s, i = next(
      (s, i)
      for s in sentences
      for i, tag in enumerate(s.tags)
      if tag not in tag_ids
    )
    raise UserError(
      f'{s.where(i)} tag {s.tags[i]!r} is not in the tag set '
      f'({len(tags)} tags from train); fix the tag'
    )
  labels = np.fromiter((tag_ids[t] for t in flat_tags), np.int32)
  # Each distinct token's word and casing ids, computed once, then gathered.
  types = {}
  type_N = np.fromiter(
    (types.setdefault(t, len(types)) for s in sentences for t in s.tokens),
    np.int64,
  )
  word_ids = np.fromiter(map(vocab.lookup, types), np.int32)[type_N]
  casing_ids = np.fromiter(map(casing_id, types), np.int32)[type_N]
  lengths = np.array([len(s.tokens) for s in sentences], dtype=np.int64)
  sentence_index = np.repeat(np.arange(len(sentences)), lengths)
  # Lay the sentences out one after another, each with k pads on both sides.
  n = len(labels)
  starts = np.cumsum(lengths + 2 * k) - (lengths + 2 * k)  # Padded sentence.
  center = np.arange(n) + 2 * k * sentence_index + k
  size = int(lengths.sum()) + 2 * k * len(sentences)
  padded_words = np.full(size, vocab.index[PAD_RIGHT], dtype=np.int32)
  padded_words[(starts[:, None] + np.arange(k)).ravel()] = vocab.index[PAD_LEFT]
  padded_words[center] = word_ids
  padded_casing = np.zeros(size, dtype=np.int32)
  padded_casing[center] = casing_ids
  window = center[:, None] + np.arange(-k, k + 1)
  feats = None
  if feature_vocab is not None and len(feature_vocab):
    pads = np.asarray(feature_vocab.pad_ids(), np.int32)
    padded_feats = np.tile(pads, (size, 1))
    padded_feats[center] = features_lib.token_ids(
      sentences, feature_vocab, feature_context
    )
    feats = padded_feats[window]
  return Windows(
    words=padded_words[window],
    casing=padded_casing[window],
    labels=labels,
    sentence_index=sentence_index.astype(np.int32),
    feats=feats,
    chars=None if char_vocab is None else spell(sentences, char_vocab),
  )


def spell(sentences, char_vocab):
  """The spelling of every token [N, chars.MAX_LEN] (CharVocab.encode),
  each distinct token spelled once."""
  index = {}
  ids = [index.setdefault(t, len(index)) for s in sentences for t in s.tokens]
  spelled = char_vocab.encode(list(index), chars_lib.MAX_LEN)
  return spelled[np.asarray(ids, np.int64)]
