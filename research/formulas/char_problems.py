"""The character CNN's gradcheck problems (research/formulas/derivations.py's
char rows): random spellings and parameters, a tie-forcing variant, a
sentence batch with character rows, and the CNN's features by the
definition in numpy loops."""

import numpy as np

from research.formulas import derivation_problems as problems


def numpy_char_responses(p, word):
  """z [n, F] of a spelling with n characters, by the definition in numpy
  loops (no compiling): z[q, f] = b_f + sum_j W[f, j] . L_char[c_{q+j-r}],
  zero vectors outside the word."""
  F, w, _ = p['W_char'].shape
  r, n = w // 2, int(np.sum(word != 0))
  z = np.zeros((n, F)) + p['b_char']
  for q in range(n):
    for j in range(w):
      if 0 <= q + j - r < n:
        z[q] += p['W_char'][:, j] @ p['L_char'][word[q + j - r]]
  return z


def numpy_char_features(p, chars):
  """research.formulas.chars.char_features in numpy: the max of each filter's
  `numpy_char_responses` over the word's positions, 0 for an empty word."""
  p = {k: np.asarray(v) for k, v in p.items()}
  chars = np.asarray(chars)
  lead, P = chars.shape[:-1], chars.shape[-1]
  F = p['W_char'].shape[0]
  out = [
    z.max(axis=0) if len(z) else np.zeros(F)
    for z in (numpy_char_responses(p, word) for word in chars.reshape(-1, P))
  ]
  return np.array(out).reshape(*lead, F)


def sample_chars(
  rng,
  words=6,
  max_len=7,
  num_chars=6,
  char_dim=3,
  filters=4,
  width=3,
  *,
  ties=False,
  lead=None,
):
  """A random character-CNN problem (params, chars, R): R the weights of the
  linear loss sum(R * h).

  Spellings [words, max_len] (or lead + [max_len]) of ids 1..num_chars-1
  (1 the unseen character), lengths 1, up to width - 1 and max_len among
  them; every row of L_char random, row 0 too (it must not matter). With
  `ties`: integer parameters in {-1, 0, 1} (exact sums) and one word of
  one repeated character, drawn until some filter's max is tied."""
  lead = lead or (words,)
  M, A = int(np.prod(lead)), num_chars
  fixed = [1, *range(2, width), max_len][:M]
  for _ in range(problems.MAX_TRIES):
    lengths = np.concatenate(
      [fixed, rng.integers(1, max_len + 1, M - len(fixed))]
    ).astype(int)
    chars = rng.integers(1, A, (M, max_len), dtype=np.int32)
    chars[np.arange(max_len)[None, :] >= lengths[:, None]] = 0
    if ties:
      chars[-1] = rng.integers(1, A)
      draw = lambda *shape: rng.integers(-1, 2, shape).astype(np.float64)
    else:
      draw = lambda *shape: rng.standard_normal(shape)
    p = {
      'L_char': draw(A, char_dim),
      'W_char': draw(filters, width, char_dim),
      'b_char': draw(filters),
    }
    R = rng.standard_normal((M, filters))
    if not ties or _has_tie(p, chars):
      return p, chars.reshape(*lead, max_len), R.reshape(*lead, filters)
  raise RuntimeError('no tied character-CNN problem drawn')


def _has_tie(p, chars):
  """Whether some filter's max over a word's positions is attained twice."""
  for word in chars:
    z = numpy_char_responses(p, word)
    if len(z) and np.any(np.sum(z == z.max(axis=0), axis=0) > 1):
      return True
  return False


def sample_sentence_chars(rng, objective, B=2, T=5, K=3, P=6, A=7):
  """A random batch of the sentence task with the character CNN: (dense,
  E, casing, tags, mask, starts, CharRows) with a hidden tanh model.

  Spellings left-aligned, 0 to P characters (an empty one included), any
  window slot padding or not, every row random (padding ones too)."""
  d, e, H, C, ce, F, w = 3, 2, 5, 4, 3, 4, 3
  D = K * (d + e + F)
  mask, starts, _ = problems.packed_layout(rng, B, T)
  dense = {
    'L_case': rng.standard_normal((4, e)),
    'V': rng.standard_normal((H, D)) * 1.5 / np.sqrt(D),
    'b': rng.standard_normal(H) * 0.5,
    'W': rng.standard_normal((C, H)) * 2.0 / np.sqrt(H),
    'c': rng.standard_normal(C),
    'W_char': rng.standard_normal((F, w, ce)),
    'b_char': rng.standard_normal(F),
  }
  if objective.sentence_level:
    dense.update(
      A=rng.standard_normal((C, C)),
      start=rng.standard_normal(C),
      end=rng.standard_normal(C),
    )
  lengths = rng.integers(0, P + 1, (B, T))
  lengths.flat[0] = 0
  ids = rng.integers(1, A, (B, T, P), dtype=np.int32)
  ids[np.arange(P) >= lengths[..., None]] = 0
  is_word = rng.random((B, T, K)) < 0.7
  return (
    dense,
    rng.standard_normal((B * T, K, d)),
    rng.integers(0, 4, (B * T, K), dtype=np.int32),
    rng.integers(0, C, (B, T), dtype=np.int32),
    mask,
    starts,
    (ids, rng.standard_normal((B, T, P, ce)), is_word),
  )
