"""Random problems for the gradient check, kept away from every kink.

Small float64 problems (a repeated word inside a window; hinges and
nonlinearities at least KINK_TOL from their kinks, with both active and inactive
windows) for the classifiers and the window scorer, and packed sentence rows
(research.formulas.crf's layout, every kind of row: one sentence then padding,
several sentences, a full row, an empty row, one-word sentences) for the
sentence-level objectives and the sentence task's gradients;
research/formulas/derivations.py compares the gradients on them."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from research.formulas import crf
from research.formulas import model as model_lib
from research.training import window_scorer

KINK_TOL = 1e-3  # least distance of a sampled problem from any kink
MAX_TRIES = 500


class Shapes(NamedTuple):
  """Sizes of a random problem."""

  windows: int = 6  # N
  half_width: int = 2  # k: K = 2k+1 words a window
  embed_dim: int = 3  # d
  case_dim: int = 2  # e
  hidden: int = 4  # H
  classes: int = 5  # C
  vocab: int = 7  # rows of L (few, so words repeat)
  casings: int = 4  # rows of L_case
  corrupt: int = 3  # M corrupt windows per true window

  @property
  def input_dim(self):
    return (2 * self.half_width + 1) * (self.embed_dim + self.case_dim)


def classifiers():
  """(tag, ModelConfig) of every classifier: softmax, hidden x g."""
  out = [('softmax', model_lib.ModelConfig('softmax'))]
  for g in model_lib.NONLINEARITIES:
    out.append((f'hidden/{g}', model_lib.ModelConfig('hidden', g)))
  return out


def sentence_models():
  """(tag, ModelConfig) of every model of the sentence task: the
  classifiers, and the dilated encoder (research.formulas.dilated) with 3
  layers (dilations 1, 2, 4) once, and with 2 layers applied twice (a
  shared block)."""
  return classifiers() + [
    ('dilated/relu', model_lib.ModelConfig('dilated', 'relu')),
    (
      'dilated/tanh/x2',
      model_lib.ModelConfig(
        'dilated', 'tanh', dilation_layers=2, block_repeats=2
      ),
    ),
  ]


def numpy_dilated(dense, a_BxTxH, starts_BxT, mask_BxT, num_layers, repeats):
  """research.formulas.dilated.encode in numpy, with loops over positions
  (an independent reading of its formulas): (h, the smallest |z| of a
  real word's pre-activation)."""
  B, T, H = a_BxTxH.shape
  sentence = np.cumsum(starts_BxT, axis=1)
  h, closest = np.array(a_BxTxH, np.float64), np.inf
  for _ in range(repeats):
    for layer in range(num_layers):
      d = 2**layer
      out = h.copy()
      for b in range(B):
        for t in range(T):
          u = []
          for o in (-1, 0, 1):
            s = t + o * d
            ok = (
              0 <= s < T and mask_BxT[b, s] and sentence[b, s] == sentence[b, t]
            )
            u.append(h[b, s] if ok else np.zeros(H))
          z = dense['W_dil'][layer] @ np.concatenate(u) + dense['b_dil'][layer]
          out[b, t] = h[b, t] + np.maximum(z, 0.0)
          if mask_BxT[b, t]:
            closest = min(closest, float(np.min(np.abs(z))))
      h = out
  return h, closest


def sample_dilated(rng, layers, repeats, rows=4, T=9, H=3, kink_tol=KINK_TOL):
  """A random problem of the dilated encoder: (params {W_dil, b_dil}, a
  [B, T, H], starts, mask, R [B, T, H]) on `packed_layout` rows plus one
  row of one sentence filling it, every real word's relu pre-activations
  kink_tol away from 0 (numpy_dilated)."""
  for _ in range(MAX_TRIES):
    mask, starts, _ = packed_layout(rng, rows - 1, T)
    mask = np.concatenate([mask, np.ones((1, T), bool)])
    starts = np.concatenate([starts, np.eye(1, T, dtype=bool)])
    params = {
      'W_dil': _normal(rng, (layers, H, 3 * H), 1.0 / np.sqrt(3 * H)),
      'b_dil': _normal(rng, (layers, H), 0.5),
    }
    a = _normal(rng, (rows, T, H))
    _, closest = numpy_dilated(params, a, starts, mask, layers, repeats)
    if closest >= kink_tol:
      R = _normal(rng, (rows, T, H))
      return _as_jax(params, a, starts, mask, R)
  raise RuntimeError('no random dilated problem away from the kinks')


def _normal(rng, shape, scale=1.0):
  return scale * rng.standard_normal(shape)


def _ids(rng, shapes):
  """Word and casing ids [N, K]; window 0 repeats its first word and casing."""
  K = 2 * shapes.half_width + 1
  words = rng.integers(0, shapes.vocab, (shapes.windows, K), dtype=np.int32)
  casing = rng.integers(0, shapes.casings, (shapes.windows, K), dtype=np.int32)
  if K > 1:
    words[0, 1], casing[0, 1] = words[0, 0], casing[0, 0]
  return words, casing


# The samplers look at pre-activations and scores only to stay away from
# kinks: a numpy forward pass (no compiling per shape) is all they need.
_NUMPY_NONLINEARITIES = {
  'tanh': np.tanh,
  'relu': lambda z: np.maximum(z, 0.0),
  'sigmoid': lambda z: 1.0 / (1.0 + np.exp(-z)),
  'hardtanh': lambda z: np.clip(z, -1.0, 1.0),
}


def numpy_window_vectors(p, words, casing):
  """research.formulas.model.window_vectors in numpy (no compiling per
  shape)."""
  p = {k: np.asarray(v) for k, v in p.items()}
  both = np.concatenate([p['L'][words], p['L_case'][casing]], axis=-1)
  return both.reshape(words.shape[0], -1)


def _nonlinearity_kinks(nonlinearity, z):
  """Distance of the pre-activations from the kinks of g (inf if smooth)."""
  if nonlinearity == 'relu':
    return float(np.min(np.abs(z)))
  if nonlinearity == 'hardtanh':
    return float(np.min(np.abs(np.abs(z) - 1.0)))
  return np.inf


def _margin_kinks(f, y):
  """(distance from the hinge and from ties, hinge arguments t_N)."""
  N = f.shape[0]
  f_y = f[np.arange(N), y]
  wrong = np.sort(np.where(np.eye(f.shape[1], dtype=bool)[y], -np.inf, f))
  t = 1.0 + wrong[:, -1] - f_y
  dist = np.abs(t)
  if f.shape[1] > 2:
    dist = np.minimum(dist, wrong[:, -1] - wrong[:, -2])
  return float(np.min(dist)), t


def _as_jax(*trees):
  return jax.tree.map(jnp.asarray, trees)


_corrupt_windows = jax.jit(
  window_scorer.corrupt_windows,
  static_argnames=('num_corrupt', 'vocab_size', 'minval'),
)


def sample_classifier(
  rng, shapes, model_cfg, objective, *, inactive=False, kink_tol=KINK_TOL
):
  """A random classifier problem (params, words, casing, y).

  Values are float64 under jax_enable_x64. With the max-margin objective the
  hinges are kept kink_tol away from zero and from ties, and (N > 1) some
  windows are active and some not; with `inactive`, the gold class is each
  window's best and the scores are scaled until every hinge is inactive.
  Pre-activations stay kink_tol away from the kinks of relu and hardtanh.
  """
  d, e, H, C = shapes.embed_dim, shapes.case_dim, shapes.hidden, shapes.classes
  D = shapes.input_dim
  for _ in range(MAX_TRIES):
    p = {
      'L': _normal(rng, (shapes.vocab, d)),
      'L_case': _normal(rng, (shapes.casings, e)),
    }
    if model_cfg.model == 'softmax':
      p['W'] = _normal(rng, (C, D), 2.0 / np.sqrt(D))
      p['c'] = _normal(rng, (C,))
    else:
      p['V'] = _normal(rng, (H, D), 1.5 / np.sqrt(D))
      p['b'] = _normal(rng, (H,), 0.5)
      p['W'] = _normal(rng, (C, H), 2.0 / np.sqrt(H))
      p['c'] = _normal(rng, (C,))
    words, casing = _ids(rng, shapes)
    y = rng.integers(0, C, shapes.windows, dtype=np.int32)
    a = numpy_window_vectors(p, words, casing)
    dist = np.inf
    if model_cfg.model == 'hidden':
      z = a @ p['V'].T + p['b']
      dist = _nonlinearity_kinks(model_cfg.nonlinearity, z)
      a = _NUMPY_NONLINEARITIES[model_cfg.nonlinearity](z)
    f = a @ p['W'].T + p['c']
    if inactive:
      y = np.argmax(f, axis=1).astype(np.int32)
      top2 = np.sort(f, axis=1)[:, -2:]
      gap = float(np.min(top2[:, 1] - top2[:, 0]))
      if gap < kink_tol or dist < kink_tol:
        continue
      p['W'], p['c'] = p['W'] * (2.0 / gap), p['c'] * (2.0 / gap)
      return _as_jax(p, words, casing, y)
    if objective.kinks == 'hinge':
      margin_dist, t = _margin_kinks(f, y)
      dist = min(dist, margin_dist)
      if shapes.windows > 1 and np.sum(t > 0) in (0, shapes.windows):
        continue
    if dist >= kink_tol:
      return _as_jax(p, words, casing, y)
  raise RuntimeError('no random classifier problem away from the kinks')


def sample_scorer(
  rng, shapes, nonlinearity, *, inactive=False, kink_tol=KINK_TOL
):
  """A random window-scorer problem.

  Returns (params, words, casing, corrupt_words, corrupt_casing). The corrupt
  windows come from window_scorer.corrupt_windows (key from `rng`, any id
  drawn, the casing kept). Hinge
  arguments 1 - s + s_c stay kink_tol away from 0 with some terms active
  and some not; with `inactive`, each window is swapped with its best
  scoring corrupt one if that scores higher and U is scaled until every term
  is inactive.
  """
  d, e, H = shapes.embed_dim, shapes.case_dim, shapes.hidden
  D, M, N = shapes.input_dim, shapes.corrupt, shapes.windows
  K = 2 * shapes.half_width + 1
  g = _NUMPY_NONLINEARITIES[nonlinearity]
  for _ in range(MAX_TRIES):
    p = {
      'L': _normal(rng, (shapes.vocab, d)),
      'L_case': _normal(rng, (shapes.casings, e)),
      'W': _normal(rng, (H, D), 1.5 / np.sqrt(D)),
      'b': _normal(rng, (H,), 0.5),
      'U': _normal(rng, (H,), 3.0 / np.sqrt(H)),
    }
    words, casing = _ids(rng, shapes)
    key = jax.random.key(int(rng.integers(2**31)))
    cwords, ccasing = jax.device_get(
      _corrupt_windows(key, words, casing, M, shapes.vocab, minval=0)
    )
    all_words = np.concatenate([words[:, None], cwords], 1).reshape(-1, K)
    all_casing = np.concatenate([casing[:, None], ccasing], 1).reshape(-1, K)
    z = numpy_window_vectors(p, all_words, all_casing) @ p['W'].T + p['b']
    dist = _nonlinearity_kinks(nonlinearity, z)
    s = (g(z) @ p['U']).reshape(N, 1 + M)
    if inactive:
      order = np.argsort(-s, axis=1)
      gap = float(
        np.min(s[np.arange(N), order[:, 0]] - s[np.arange(N), order[:, 1]])
      )
      if gap < kink_tol or dist < kink_tol:
        continue
      w = np.take_along_axis(
        all_words.reshape(N, 1 + M, K), order[:, :, None], 1
      )
      c = np.take_along_axis(
        all_casing.reshape(N, 1 + M, K), order[:, :, None], 1
      )
      p['U'] = p['U'] * (2.0 / gap)
      return _as_jax(p, w[:, 0], c[:, 0], w[:, 1:], c[:, 1:])
    t = 1.0 - s[:, :1] + s[:, 1:]
    dist = min(dist, float(np.min(np.abs(t))))
    if t.size > 1 and np.sum(t > 0) in (0, t.size):
      continue
    if dist >= kink_tol:
      return _as_jax(p, words, casing, cwords, ccasing)
  raise RuntimeError('no random scorer problem away from the kinks')


# --- Packed sentence rows (research.formulas.crf's layout).
# ---------------------------


class SentenceShapes(NamedTuple):
  """Sizes of a random batch of the sentence task
  (research.training.sequence)."""

  rows: int = 5  # B
  row_length: int = 6  # T (at least 3)
  half_width: int = 1  # k
  embed_dim: int = 3  # d
  case_dim: int = 2  # e
  hidden: int = 4  # H
  classes: int = 4  # C
  casings: int = 3  # rows of L_case (few, so casing ids repeat)
  feature_kinds: int = 2  # F: rows of L_feat per word, when it has features
  feature_dim: int = 2  # g: columns of L_feat

  def input_dim(self, features):
    width = self.feature_kinds * self.feature_dim if features else 0
    return (2 * self.half_width + 1) * (self.embed_dim + self.case_dim + width)


def _composition(rng, n, parts):
  """n split into `parts` positive lengths at random."""
  cuts = np.sort(rng.choice(np.arange(1, n), parts - 1, replace=False))
  return np.diff(np.concatenate([[0], cuts, [n]])).tolist()


def packed_layout(rng, rows, T):
  """A random layout of packed rows: (mask, starts) [B, T] bool and the
  sentence lengths of each row.

  The rows cycle through the kinds a packed batch holds, then are shuffled:
  one sentence then padding; a full row of several sentences, the first of
  one word; an empty row; several sentences then padding.
  """
  if T < 3:
    raise ValueError(f'packed_layout needs T >= 3, got {T}')
  per_row = []
  for r in range(rows):
    kind = r % 4
    if kind == 0:
      lengths = [int(rng.integers(1, T))]
    elif kind == 1:
      lengths = [1] + _composition(rng, T - 1, int(rng.integers(1, T)))
    elif kind == 2:
      lengths = []
    else:
      n = int(rng.integers(2, T))
      lengths = _composition(rng, n, int(rng.integers(2, n + 1)))
    per_row.append(lengths)
  per_row = [per_row[i] for i in rng.permutation(rows)]
  mask = np.zeros((rows, T), bool)
  starts = np.zeros((rows, T), bool)
  for r, lengths in enumerate(per_row):
    offset = 0
    for length in lengths:
      starts[r, offset] = True
      mask[r, offset : offset + length] = True
      offset += length
  return mask, starts, per_row


def viterbi_gap(f_BxTxC, mask_BxT, starts_BxT, trans):
  """How far the Viterbi recursion is from a tie: the least gap between the
  best and the second best candidate of every max it takes over words
  (each tag's best predecessor, the best last tag), in numpy."""
  A, start, end = (np.asarray(a) for a in trans)
  gap = np.inf
  for f_TxC, mask_T, starts_T in zip(f_BxTxC, mask_BxT, starts_BxT):
    if not mask_T[0]:
      continue
    delta = start + f_TxC[0]
    for t in range(1, len(mask_T)):
      if not mask_T[t]:
        break
      M = end[:, None] + start[None, :] if starts_T[t] else A
      top = np.sort(delta[:, None] + M, axis=0)
      gap = min(gap, float(np.min(top[-1] - top[-2])))
      delta = top[-1] + f_TxC[t]
    top = np.sort(delta + end)
    gap = min(gap, float(top[-1] - top[-2]))
  return gap


def _hamming(tags_BxT, mask_BxT, C):
  return (1.0 - np.eye(C)[tags_BxT]) * mask_BxT[..., None]


def sample_crf(
  rng,
  rows,
  T,
  classes,
  objective,
  *,
  inactive=False,
  kink_tol=KINK_TOL,
):
  """A random sentence-level problem (f, tags, mask, starts, Transitions).

  The layout is `packed_layout`'s; padding gets large scores (scale 30) and
  random tags, which must not reach the loss. With Viterbi kinks (struct_margin)
  the cost-augmented Viterbi recursion stays kink_tol away from ties, and about
  half the rows have the gold path raised above every other by more than its
  Hamming cost (their loss and gradient are zero); with `inactive`, every row.
  """
  C = classes
  for _ in range(MAX_TRIES):
    mask, starts, _ = packed_layout(rng, rows, T)
    f = np.where(
      mask[..., None],
      _normal(rng, (rows, T, C), 1.5),
      _normal(rng, (rows, T, C), 30.0),
    )
    tags = rng.integers(0, C, (rows, T), dtype=np.int32)
    trans = crf.Transitions(
      _normal(rng, (C, C)), _normal(rng, (C,)), _normal(rng, (C,))
    )
    if objective.kinks != 'viterbi':
      return _as_jax(f, tags, mask, starts, trans)
    # Each tag changed from gold changes S by at most 2 max|f| + 4 max|A|
    # (or start/end): raising the gold tags by more than that plus the cost
    # makes the gold path the cost-augmented best.
    raised = np.ones(rows, bool) if inactive else rng.random(rows) < 0.5
    words = np.abs(np.where(mask[..., None], f, 0.0)).max()
    bound = np.abs(np.concatenate([a.ravel() for a in trans])).max()
    boost = 2.0 + 2.0 * words + 4.0 * bound
    gold = np.eye(C)[tags] * (mask & raised[:, None])[..., None]
    f = f + boost * gold
    augmented = f + _hamming(tags, mask, C)
    if viterbi_gap(augmented, mask, starts, trans) >= kink_tol:
      return _as_jax(f, tags, mask, starts, trans)
  raise RuntimeError('no random sentence problem away from the ties')


def sample_tied_crf(rng, rows, T, classes):
  """A sentence-level problem (as `sample_crf`'s) whose scores and
  transitions are all 0 or 1: the cost-augmented recursion ties almost
  everywhere, as where the softmax model and the transitions start (0)."""
  mask, starts, _ = packed_layout(rng, rows, T)

  def bits(*shape):
    return rng.integers(0, 2, shape).astype(np.float64)

  C = classes
  trans = crf.Transitions(bits(C, C), bits(C), bits(C))
  tags = rng.integers(0, C, (rows, T), dtype=np.int32)
  return _as_jax(bits(rows, T, C), tags, mask, starts, trans)


def sample_sentences(
  rng, shapes, model_cfg, objective, *, features=True, kink_tol=KINK_TOL
):
  """A random batch of the sentence task, as
  research.training.sequence.batch_grads takes it: (dense, E, casing, feat,
  tags, mask, starts).

  dense holds L_case, the classifier's weights, and A, start, end for a
  sentence-level objective; E [B*T, K, d] the windows' word vectors
  (padding windows random too); casing [B*T, K] ids (repeated); feat
  [B*T, K, F, g] the windows' feature rows, or None without `features`.
  Pre-activations of word windows stay kink_tol from the kinks of relu and
  hardtanh; with an objective of hinge kinks (max_margin) the words' hinges
  stay away from zero and from ties (some active, some not); with Viterbi
  kinks (struct_margin) the cost-augmented Viterbi recursion stays away from
  ties (the Objective's `kinks`).
  """
  B, T, C = shapes.rows, shapes.row_length, shapes.classes
  d, e, H = shapes.embed_dim, shapes.case_dim, shapes.hidden
  K, N = 2 * shapes.half_width + 1, shapes.rows * shapes.row_length
  F, g = shapes.feature_kinds, shapes.feature_dim
  D = shapes.input_dim(features)
  for _ in range(MAX_TRIES):
    mask, starts, _ = packed_layout(rng, B, T)
    dense = {'L_case': _normal(rng, (shapes.casings, e))}
    if model_cfg.model == 'softmax':
      dense['W'] = _normal(rng, (C, D), 2.0 / np.sqrt(D))
      dense['c'] = _normal(rng, (C,))
    else:
      dense['V'] = _normal(rng, (H, D), 1.5 / np.sqrt(D))
      dense['b'] = _normal(rng, (H,), 0.5)
      dense['W'] = _normal(rng, (C, H), 2.0 / np.sqrt(H))
      dense['c'] = _normal(rng, (C,))
    if model_cfg.model == 'dilated':
      n = model_cfg.dilation_layers
      dense['W_dil'] = _normal(rng, (n, H, 3 * H), 1.0 / np.sqrt(3 * H))
      dense['b_dil'] = _normal(rng, (n, H), 0.5)
    trans = None
    if objective.sentence_level:
      trans = crf.Transitions(
        _normal(rng, (C, C)), _normal(rng, (C,)), _normal(rng, (C,))
      )
      dense.update(A=trans.A, start=trans.start, end=trans.end)
    E = _normal(rng, (N, K, d))
    casing = rng.integers(0, shapes.casings, (N, K), dtype=np.int32)
    feat = _normal(rng, (N, K, F, g)) if features else None
    tags = rng.integers(0, C, (B, T), dtype=np.int32)
    parts = [E, dense['L_case'][casing]]
    if features:
      parts.append(feat.reshape(N, K, F * g))
    a = np.concatenate(parts, axis=-1).reshape(N, D)
    words = mask.reshape(-1)
    dist = np.inf
    if model_cfg.model in ('hidden', 'dilated'):
      z = a @ dense['V'].T + dense['b']
      dist = _nonlinearity_kinks(model_cfg.nonlinearity, z[words])
      a = _NUMPY_NONLINEARITIES[model_cfg.nonlinearity](z)
    if model_cfg.model == 'dilated':
      h, closest = numpy_dilated(
        dense, a.reshape(B, T, H), starts, mask,
        model_cfg.dilation_layers, model_cfg.block_repeats,
      )  # fmt: skip
      a, dist = h.reshape(N, H), min(dist, closest)
    f = a @ dense['W'].T + dense['c']
    if objective.kinks == 'hinge':
      margin_dist, t = _margin_kinks(f[words], tags.reshape(-1)[words])
      dist = min(dist, margin_dist)
      if np.sum(t > 0) in (0, len(t)):
        continue
    if objective.kinks == 'viterbi':
      augmented = f.reshape(B, T, C) + _hamming(tags, mask, C)
      dist = min(dist, viterbi_gap(augmented, mask, starts, trans))
    if dist >= kink_tol:
      return _as_jax(dense, E, casing, feat, tags, mask, starts)
  raise RuntimeError('no random sentence batch away from the kinks')
