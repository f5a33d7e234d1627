"""A character CNN per word, its formulas and their hand-derived backprop.

Each word is spelled as P character ids (`CharVocab.encode`: id 0 padding,
1 a character not seen in training) and turned into F features:

  e_p    = L_char[c_p] * valid_p           character vectors; a padding
                                           position (c_p = 0) gives the zero
                                           vector, never row 0 of L_char
  x_p    = [e_{p-r}; ...; e_{p+r}]         the window of width w = 2r+1 at
                                           position p, zero vectors beyond
                                           the spelling ('same' padding)
  z_p    = W_char x_p + b_char             F filters, W_char [F, w, e]
  h_f    = max_{p valid} z_p,f             over the positions that hold a
                                           character; 0 for an empty word

Beyond the word's length e_p = 0, so a short word is zero-padded at both ends
however long P is, and those positions never win the max. One function per
formula, its manual gradient beside it (no `jax.grad`):

  embed_chars / embed_chars_backward       dE_p = de_p valid_p (0 at padding)
  char_windows / char_windows_backward     de_q = sum_j dx_{q-j+r, j}
  char_conv / char_conv_backward           dW = sum_p dz_p x_p^T, db = sum_p
                                           dz_p, dx_p = W^T dz_p
  masked_max / masked_max_backward         dz_p,f = dh_f [p wins f] / #winners

Ties in the max: jax.grad of `jnp.max` splits the gradient equally among
every position that attains the max (measured with jax 0.10.2: the gradient
of max([1, 3, 3, 2, 3]) is [0, 1/3, 1/3, 0, 1/3]; with the third entry
masked to -inf by jnp.where, [0, 1/2, 0, 0, 1/2]: lax's reduce_max JVP
divides by the count of the entries equal to the max).
`masked_max_backward` does the same, so that the manual gradient equals
autodiff even at exact ties (common: a repeated character, 'aaa', gives
identical windows). Any split is a valid subgradient.

Integration: `char_features_of_rows` takes the looked-up rows E = L_char[chars]
(any leading shape, e.g. [N, K, P] for the K slots of N windows, flattened
inside), and `char_backward` returns the gradient of those rows (`CharGrads`'s
`ids`, `rows`), for a sparse update of L_char like that of L; `table_grad`
scatter-adds them into a dense [A, e] gradient (as
research.formulas.manual_grads.scatter_rows does for L). The raw tokens are
spelled (the word vocabulary lowercases them): research.data.vocab.spell.

Shapes: M words, P character positions (max_len), A rows of L_char, e its
columns, w the width (odd), F filters. Pure jnp, jit- and vmap-friendly, no
implicit rank promotion; floats follow the dtype of the parameters.
"""

import collections
import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PAD, UNSEEN = 0, 1  # character ids
MAX_LEN = 16  # characters spelled per word (a longer word keeps its first)
PARAM_KEYS = ('L_char', 'W_char', 'b_char')


# --- The character vocabulary. -----------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class CharVocab:
  """The characters seen in training, as rows of L_char.

  Id 0 is padding, id 1 a character never seen in training (or seen fewer
  than min_count times), then the seen characters by descending count (ties
  by character). Characters are taken as written: no lowercasing, no digit
  folding (casing and digits are what the CNN is for).

  Attributes:
    chars: the seen characters, char i having id i + 2.
    index: character -> id.
  """

  chars: tuple
  index: dict = dataclasses.field(repr=False)

  @classmethod
  def from_chars(cls, chars):
    chars = tuple(chars)
    if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
      raise ValueError('chars must be distinct single characters')
    return cls(chars, {c: i + 2 for i, c in enumerate(chars)})

  @classmethod
  def build(cls, tokens, min_count=1):
    """The characters of the training tokens (an iterable of str, every
    occurrence counted) seen at least min_count times."""
    counts = collections.Counter(c for t in tokens for c in t)
    kept = sorted(
      (c for c, n in counts.items() if n >= min_count),
      key=lambda c: (-counts[c], c),
    )
    return cls.from_chars(kept)

  def __len__(self):
    """A, the rows of L_char: padding, unseen and the seen characters."""
    return len(self.chars) + 2

  def lookup(self, char):
    return self.index.get(char, UNSEEN)

  def encode(self, tokens, max_len):
    """Spellings [len(tokens), max_len] int32: each token's character ids
    from position 0, then 0 (padding). A token longer than max_len keeps
    its first max_len characters; an empty token is all padding."""
    if max_len < 1:
      raise ValueError(f'max_len must be >= 1, got {max_len}')
    out = np.zeros((len(tokens), max_len), np.int32)
    for i, token in enumerate(tokens):
      ids = [self.lookup(c) for c in token[:max_len]]
      out[i, : len(ids)] = ids
    return out

  def to_json(self):
    """The vocabulary as JSON data (`from_json` reads it back)."""
    return {'chars': list(self.chars)}

  @classmethod
  def from_json(cls, obj):
    return cls.from_chars(obj['chars'])


# --- Parameters. --------------------------------------------------------------


def init_params(
  key, num_chars, char_dim=16, num_filters=30, width=3, dtype=jnp.float32
):
  """{'L_char' [A, e], 'W_char' [F, w, e], 'b_char' [F]}: small normal
  character vectors, Glorot-uniform filters (fan-in w e), zero biases."""
  check_width(width)
  k_table, k_filters = jax.random.split(key)
  limit = np.sqrt(6.0 / (width * char_dim + num_filters))
  return {
    'L_char': 0.1 * jax.random.normal(k_table, (num_chars, char_dim), dtype),
    'W_char': jax.random.uniform(
      k_filters, (num_filters, width, char_dim), dtype, -limit, limit
    ),
    'b_char': jnp.zeros((num_filters,), dtype),
  }


def check_width(width):
  if width < 1 or width % 2 == 0:
    raise ValueError(f'the width must be odd and >= 1, got {width}')


# --- The formulas, each with its hand-derived backward pass. -----------------


def valid_positions(chars_MxP):
  """valid_p = [c_p != 0]: the positions that hold a character (for the
  left-aligned spellings of CharVocab.encode, p < the word's length)."""
  return chars_MxP != PAD


def embed_chars(E_MxPxe, valid_MxP):
  """e_p = L_char[c_p] valid_p: the looked-up rows E, zeroed at padding."""
  return E_MxPxe * valid_MxP[:, :, None].astype(E_MxPxe.dtype)


def embed_chars_backward(de_MxPxe, valid_MxP):
  """dJ/dE_p = dJ/de_p valid_p: a padding position's row gets nothing (the
  loss does not read row 0 of L_char)."""
  return de_MxPxe * valid_MxP[:, :, None].astype(de_MxPxe.dtype)


def char_windows(e_MxPxe, width):
  """x_p = [e_{p-r}; ...; e_{p+r}] [M, P, w, e], r = (w-1)/2, with zero
  vectors outside 0..P-1 ('same' zero padding)."""
  P, r = e_MxPxe.shape[1], width // 2
  padded = jnp.pad(e_MxPxe, ((0, 0), (r, r), (0, 0)))
  return jnp.stack([padded[:, j : j + P] for j in range(width)], axis=2)


def char_windows_backward(dX_MxPxwxe):
  """dJ/de_q = sum_j dJ/dx_{q-j+r, j}: slot j of the window at p reads
  e_{p+j-r}, so each position collects the w slots that read it (those
  reading the zero padding are dropped)."""
  _, P, width, _ = dX_MxPxwxe.shape
  r = width // 2
  de = sum(
    jnp.pad(dX_MxPxwxe[:, :, j], ((0, 0), (j, width - 1 - j), (0, 0)))
    for j in range(width)
  )
  return de[:, r : r + P]


def char_conv(X_MxPxwxe, W_char_Fxwxe, b_char_F):
  """z_p = W_char x_p + b_char [M, P, F]: one matrix product over every
  position of every word."""
  M, P, w, e = X_MxPxwxe.shape
  F = W_char_Fxwxe.shape[0]
  z_QxF = X_MxPxwxe.reshape(M * P, w * e) @ W_char_Fxwxe.reshape(F, w * e).T
  return z_QxF.reshape(M, P, F) + b_char_F[None, None, :]


def char_conv_backward(X_MxPxwxe, W_char_Fxwxe, dz_MxPxF):
  """dJ/dW = sum_{m,p} dz_p x_p^T, dJ/db = sum_{m,p} dz_p,
  dJ/dx_p = W^T dz_p: (dW [F, w, e], db [F], dX [M, P, w, e])."""
  M, P, w, e = X_MxPxwxe.shape
  F = W_char_Fxwxe.shape[0]
  dz_QxF = dz_MxPxF.reshape(M * P, F)
  dW = (dz_QxF.T @ X_MxPxwxe.reshape(M * P, w * e)).reshape(F, w, e)
  dX = (dz_QxF @ W_char_Fxwxe.reshape(F, w * e)).reshape(M, P, w, e)
  return dW, jnp.sum(dz_QxF, axis=0), dX


def masked_max(z_MxPxF, valid_MxP):
  """h_f = max_{p valid} z_p,f [M, F]; 0 for a word with no character.

  Positions beyond the word's length are -inf before the max, so they never
  win (and get no gradient from jax.grad)."""
  valid = valid_MxP[:, :, None]
  h_MxF = jnp.max(jnp.where(valid, z_MxPxF, -jnp.inf), axis=1)
  return jnp.where(jnp.any(valid_MxP, axis=1)[:, None], h_MxF, 0.0)


def masked_max_backward(z_MxPxF, valid_MxP, h_MxF, dh_MxF):
  """dJ/dz_p,f = dJ/dh_f [p wins f] / #winners of f.

  The winners of filter f are the valid positions with z_p,f = h_f. At a
  tie the gradient is split equally among them, as jax.grad of jnp.max
  does (its JVP weighs the tangents of every position equal to the max by
  1 / their count); a word with no character has none (gradient 0)."""
  wins = valid_MxP[:, :, None] & (z_MxPxF == h_MxF[:, None, :])
  wins = wins.astype(dh_MxF.dtype)
  count_MxF = jnp.maximum(jnp.sum(wins, axis=1), 1.0)
  return wins * (dh_MxF / count_MxF)[:, None, :]


# --- The whole feature map. ---------------------------------------------------


class CharCache(NamedTuple):
  """What `char_backward` needs from the forward pass (flattened to M)."""

  X: jax.Array  # windows x_p [M, P, w, e]
  z: jax.Array  # filter responses [M, P, F]
  h: jax.Array  # the features [M, F]


class CharGrads(NamedTuple):
  """Gradients of the character CNN.

  W_char [F, w, e] and b_char [F]; the table's as the gradient `rows`
  [..., P, e] of each looked-up row L_char[ids] (ids: the spellings, same
  leading shape; padding rows are zero), summed into L_char by
  `table_grad`."""

  W_char: jax.Array
  b_char: jax.Array
  ids: jax.Array
  rows: jax.Array


def char_features(L_char_Axe, W_char_Fxwxe, b_char_F, chars_MxP):
  """h [..., F] of words spelled chars [..., P] (any leading shape), and the
  cache of `char_backward`: `char_features_of_rows` on L_char[chars]."""
  return char_features_of_rows(
    L_char_Axe[chars_MxP], W_char_Fxwxe, b_char_F, chars_MxP
  )


def char_features_of_rows(E_MxPxe, W_char_Fxwxe, b_char_F, chars_MxP):
  """h = max_{p valid} (W_char x_p + b_char) from the looked-up rows.

  Args:
    E_MxPxe: L_char[chars] [..., P, e] (row 0 is read but masked out).
    W_char_Fxwxe: the filters, w odd.
    b_char_F: the biases.
    chars_MxP: the spellings [..., P] (CharVocab.encode), 0 for padding.

  Returns:
    (h [..., F], CharCache).
  """
  lead, P = chars_MxP.shape[:-1], chars_MxP.shape[-1]
  check_width(W_char_Fxwxe.shape[1])
  valid_MxP = valid_positions(chars_MxP.reshape(-1, P))
  e_MxPxe = embed_chars(E_MxPxe.reshape(-1, P, E_MxPxe.shape[-1]), valid_MxP)
  X_MxPxwxe = char_windows(e_MxPxe, W_char_Fxwxe.shape[1])
  z_MxPxF = char_conv(X_MxPxwxe, W_char_Fxwxe, b_char_F)
  h_MxF = masked_max(z_MxPxF, valid_MxP)
  return h_MxF.reshape(*lead, -1), CharCache(X_MxPxwxe, z_MxPxF, h_MxF)


def char_backward(W_char_Fxwxe, chars_MxP, cache, dh_MxF):
  """The hand-derived backward pass of `char_features`.

  From dh = dJ/dh: the max routes each filter's gradient to its winning
  positions (split equally at ties, `masked_max_backward`); the
  convolution's backward gives dW_char, db_char and dJ/dx_p
  (`char_conv_backward`); the windows' backward sums each position's w
  reads (`char_windows_backward`), and the mask zeroes the padding rows
  (`embed_chars_backward`).

  Args:
    W_char_Fxwxe: the filters.
    chars_MxP: the spellings [..., P].
    cache: the CharCache of the forward pass.
    dh_MxF: dJ/dh [..., F] (already weighted, e.g. by 1/N for a mean).

  Returns:
    CharGrads (rows [..., P, e], ids = chars_MxP).
  """
  P = chars_MxP.shape[-1]
  valid_MxP = valid_positions(chars_MxP.reshape(-1, P))
  dz_MxPxF = masked_max_backward(
    cache.z, valid_MxP, cache.h, dh_MxF.reshape(cache.h.shape)
  )
  dW, db, dX_MxPxwxe = char_conv_backward(cache.X, W_char_Fxwxe, dz_MxPxF)
  de_MxPxe = char_windows_backward(dX_MxPxwxe)
  dE_MxPxe = embed_chars_backward(de_MxPxe, valid_MxP)
  rows = dE_MxPxe.reshape(*chars_MxP.shape, -1)
  return CharGrads(dW, db, chars_MxP, rows)


# --- From words to the slots of their windows. -------------------------------


def slot_features(h_BxTxF, is_word_BxTxK):
  """The character features of every window slot [B, T, K, F], from those of the
  words of B packed rows of T words (research.training.sequence's layout).

  Slot j of the window at t holds the word at t + j - k of its row (k =
  (K-1)/2), its features h_{t+j-k}, or 0 where the slot is padding (beyond
  its sentence): `char_windows` over the row, masked by is_word."""
  slots = char_windows(h_BxTxF, is_word_BxTxK.shape[-1])
  return slots * is_word_BxTxK[..., None].astype(slots.dtype)


def slot_features_backward(d_BxTxKxF, is_word_BxTxK):
  """dJ/dh_t = sum_j dJ/dslot_{t-j+k, j} over the slots that hold word t
  (`char_windows_backward` of the masked slot gradients)."""
  mask = is_word_BxTxK[..., None].astype(d_BxTxKxF.dtype)
  return char_windows_backward(d_BxTxKxF * mask)


def table_grad(grads, num_chars):
  """dJ/dL_char [A, e]: the rows' gradients scatter-added by id (a
  character read at several positions gets their sum; row 0 stays 0)."""
  rows = grads.rows
  return (
    jnp.zeros((num_chars, rows.shape[-1]), rows.dtype).at[grads.ids].add(rows)
  )


def param_grads(grads, num_chars):
  """{'L_char', 'W_char', 'b_char'}: dense gradients keyed as `init_params`."""
  return {
    'L_char': table_grad(grads, num_chars),
    'W_char': grads.W_char,
    'b_char': grads.b_char,
  }
