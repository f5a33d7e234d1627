"""Windows of windows: dilated convolutions over a sentence's word vectors,
their formulas and their hand-derived backprop.

The window model reads 2k+1 words. This encoder widens what each word sees by
convolving, over the positions of a packed row (research.formulas.crf's
layout: B rows of T positions, several sentences a row), the hidden vectors
the window network gives every word:

  a_t     = g(V x_t + b)                     the window network's hidden layer
  h^0     = a
  u^l_t   = [h^l_{t-d}; h^l_t; h^l_{t+d}]    width 3, dilation d = 2^l; a
            * [same sentence, real word]     neighbor in another sentence of
                                             the row, beyond the row or on
                                             padding reads the zero vector
  z^l_t   = W_dil[l] u^l_t + b_dil[l]        W_dil [n, H, 3H], b_dil [n, H]
  h^{l+1} = h^l + relu(z^l)                  residual
  f_t     = W h_t + c                        class scores, W [C, H]

The n layers (dilations 1, 2, ..., 2^(n-1)) form a block; the block is
applied `repeats` times with the same parameters (Strubell et al. 2017's
iterated dilated CNN). After one block a word reads 2^(n+1) - 1 window
centers, so 2^(n+1) + 2k - 1 words (n = 3, k = 2: 19 words; n = 4: 35).

Backprop, one function beside each formula (no jax.grad):

  neighbors / gather_windows_backward  the transposed gather: du^l_{t,o}
                                       goes back to position t + o d (o in
                                       -1, 0, 1) when valid, summed there
  conv_layer / conv_layer_backward     dz = dh' [z > 0]; dW_dil[l] = sum_t
                                       dz_t u_t^T; db_dil[l] = sum_t dz_t;
                                       du_t = W_dil[l]^T dz_t; dh = dh' + the
                                       gather's transpose of du
  encode / encode_backward             the chain through the layers and the
                                       repeats, in reverse; a shared layer's
                                       gradients summed over its repeats

Pure jnp, jit- and vmap-friendly; floats follow the parameters' dtype.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

PARAM_KEYS = ('W_dil', 'b_dil')
OFFSETS = (-1, 0, 1)  # width 3


def dilations(num_layers):
  """The block's dilations 1, 2, 4, ..., 2^(num_layers - 1)."""
  return tuple(2**layer for layer in range(num_layers))


def context_words(num_layers, repeats, window):
  """How many words a position's scores read: the dilations' reach (sum of
  2 d over the applications of the block) plus the window's 2k+1."""
  return 2 * repeats * sum(dilations(num_layers)) + 2 * window + 1


def neighbors(starts_BxT, mask_BxT, d):
  """(idx_Tx3, valid_BxTx3): the positions t - d, t, t + d of each position
  t (clipped into the row) and whether each is a real word of t's sentence:
  inside the row, no sentence start between them, and not padding."""
  T = mask_BxT.shape[1]
  pos_Tx3 = jnp.arange(T)[:, None] + d * jnp.asarray(OFFSETS)[None, :]
  inside_Tx3 = (pos_Tx3 >= 0) & (pos_Tx3 < T)
  idx_Tx3 = jnp.clip(pos_Tx3, 0, T - 1)
  sentence_BxT = jnp.cumsum(starts_BxT.astype(jnp.int32), axis=1)
  same_BxTx3 = sentence_BxT[:, idx_Tx3] == sentence_BxT[:, :, None]
  valid_BxTx3 = inside_Tx3[None] & same_BxTx3 & mask_BxT[:, idx_Tx3]
  return idx_Tx3, valid_BxTx3


def gather_windows(h_BxTxH, idx_Tx3, valid_BxTx3):
  """u_t = [h_{t-d}; h_t; h_{t+d}] with invalid neighbors zero: [B, T, 3H]."""
  B, T, H = h_BxTxH.shape
  u_BxTx3xH = h_BxTxH[:, idx_Tx3] * valid_BxTx3[..., None].astype(h_BxTxH.dtype)
  return u_BxTx3xH.reshape(B, T, 3 * H)


def gather_windows_backward(du_BxTx3H, idx_Tx3, valid_BxTx3):
  """The transposed gather: dh_s = sum over (t, o) with t + o d = s and
  valid of du_{t,o}: [B, T, H]."""
  B, T, _ = du_BxTx3H.shape
  du_BxTx3xH = du_BxTx3H.reshape(B, T, 3, -1)
  du_BxTx3xH = du_BxTx3xH * valid_BxTx3[..., None].astype(du_BxTx3H.dtype)
  dh_BxTxH = jnp.zeros((B, T, du_BxTx3xH.shape[-1]), du_BxTx3H.dtype)
  for o in range(len(OFFSETS)):
    dh_BxTxH = dh_BxTxH.at[:, idx_Tx3[:, o]].add(du_BxTx3xH[:, :, o])
  return dh_BxTxH


class LayerCache(NamedTuple):
  u: jax.Array  # [B, T, 3H] the gathered windows
  z: jax.Array  # [B, T, H] the pre-activations
  idx: jax.Array  # [T, 3]
  valid: jax.Array  # [B, T, 3]


def conv_layer(h_BxTxH, W_Hx3H, b_H, idx_Tx3, valid_BxTx3):
  """h' = h + relu(W_dil[l] u + b_dil[l]); returns (h', LayerCache)."""
  u_BxTx3H = gather_windows(h_BxTxH, idx_Tx3, valid_BxTx3)
  z_BxTxH = u_BxTx3H @ W_Hx3H.T + b_H[None, None, :]
  out = h_BxTxH + jax.nn.relu(z_BxTxH)
  return out, LayerCache(u_BxTx3H, z_BxTxH, idx_Tx3, valid_BxTx3)


def conv_layer_backward(dout_BxTxH, W_Hx3H, cache):
  """From dh' = dJ/dh': (dh, dW_dil[l], db_dil[l]) of `conv_layer`
  (relu'(z) = [z > 0], as jax's relu takes at 0)."""
  dz_BxTxH = dout_BxTxH * (cache.z > 0).astype(dout_BxTxH.dtype)
  dW_Hx3H = jnp.einsum('bth,btk->hk', dz_BxTxH, cache.u)
  db_H = jnp.sum(dz_BxTxH, axis=(0, 1))
  du_BxTx3H = dz_BxTxH @ W_Hx3H
  dh = dout_BxTxH + gather_windows_backward(du_BxTx3H, cache.idx, cache.valid)
  return dh, dW_Hx3H, db_H


def encode(params, a_BxTxH, starts_BxT, mask_BxT, repeats=1):
  """h after `repeats` applications of the block of len(params['W_dil'])
  layers (dilations 1, 2, 4, ...; shared across repeats); returns (h,
  [LayerCache per application, in order])."""
  n = params['W_dil'].shape[0]
  layout = [neighbors(starts_BxT, mask_BxT, d) for d in dilations(n)]
  h, caches = a_BxTxH, []
  for _ in range(repeats):
    for layer in range(n):
      h, cache = conv_layer(
        h, params['W_dil'][layer], params['b_dil'][layer], *layout[layer]
      )
      caches.append(cache)
  return h, caches


def encode_rows(params, a_NxH, layout, repeats=1):
  """`encode` of the N = B T hidden vectors a [N, H] of packed rows laid
  out as `layout` (starts_BxT, mask_BxT): (h [N, H], the caches)."""
  starts_BxT, mask_BxT = layout
  h_BxTxH, caches = encode(
    params, a_NxH.reshape(*mask_BxT.shape, -1), starts_BxT, mask_BxT, repeats
  )
  return h_BxTxH.reshape(a_NxH.shape), caches


def encode_backward(params, caches, dh_BxTxH):
  """(da, {'W_dil', 'b_dil'}) of `encode` from dJ/dh: the layers in
  reverse, each shared layer's gradients summed over the repeats."""
  n = params['W_dil'].shape[0]
  dW = jnp.zeros_like(params['W_dil'])
  db = jnp.zeros_like(params['b_dil'])
  dh = dh_BxTxH
  for i in reversed(range(len(caches))):
    layer = i % n
    dh, dW_l, db_l = conv_layer_backward(dh, params['W_dil'][layer], caches[i])
    dW = dW.at[layer].add(dW_l)
    db = db.at[layer].add(db_l)
  return dh, {'W_dil': dW, 'b_dil': db}


def init_params(key, num_layers, hidden):
  """W_dil [n, H, 3H] Glorot-uniform per layer (fan in 3H, fan out H) and
  b_dil [n, H] zeros."""
  scale = jnp.sqrt(6.0 / (4.0 * hidden)).astype(jnp.float32)
  W = jax.random.uniform(
    key, (num_layers, hidden, 3 * hidden), jnp.float32, -1.0, 1.0
  )
  return {
    'W_dil': W * scale,
    'b_dil': jnp.zeros((num_layers, hidden), jnp.float32),
  }
