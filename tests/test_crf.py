"""Tests for research.formulas.crf and manual_grads.sentence_batch_grads.

Float64 throughout (but the training tests, float32 like training), on
packed rows of every kind (research.formulas.derivation_problems'
packed_layout: one sentence then padding, several sentences, a full row,
an empty row, one-word sentences):

* the forward algorithm and Viterbi equal brute-force enumeration of every
  tag path of a row;
* the hand-derived gradients (forward-backward, the cost-augmented best
  path) equal jax.grad at rtol 1e-10, with exact zeros at padding, and at
  exact ties the subgradient jax.grad takes;
* packing sentences into rows changes nothing: the same losses and
  gradients as one sentence per row;
* manual_grads.sentence_batch_grads equals the autodiff branch of
  research.training.sequence.batch_grads for every objective, and training with
  --grad=manual equals training with autodiff;
* deliberately wrong derivations fail the same comparison.

As in tests/test_manual_grads.py, compiling is what costs: each suite is
traced into one program (a module fixture) that the tests read.
"""

import dataclasses
import functools
import itertools
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.data import vocab as vocab_lib
from research.formulas import autodiff
from research.formulas import crf
from research.formulas import derivation_problems as problems
from research.formulas import derivations
from research.formulas import manual_grads as mg
from research.formulas import model as model_lib
from research.formulas import objectives
from research.training import classifier
from research.training import engine
from research.training import sequence
from tests.conftest import by_name
from tests.conftest import fit_sentences

RTOL = 1e-10
OBJECTIVES = objectives.names('sentence')
get = objectives.get
SENTENCE_OBJECTIVES = tuple(o.name for o in derivations.sentence_objectives())
# Random problems, SEEDS of each (rows, T, C), vmapped: one compiled case
# serves them all. 3^6 = 729 paths a row at most for the brute force.
LAYOUTS = ((6, 6, 3), (4, 3, 2))
SEEDS = 3
SENTENCE_MODELS = {
  'softmax': model_lib.ModelConfig('softmax'),
  'hidden': model_lib.ModelConfig('hidden', 'tanh'),
}


def _rng(*parts):
  """A generator seeded by the name of what it is for."""
  return np.random.default_rng(zlib.crc32('/'.join(map(str, parts)).encode()))


def _sentences(mask_BxT, starts_BxT):
  """(row, offset, length) of every sentence of a layout."""
  out = []
  for r, (mask_T, starts_T) in enumerate(zip(mask_BxT, starts_BxT)):
    offsets = list(np.flatnonzero(starts_T)) + [int(mask_T.sum())]
    out += [(r, o, e - o) for o, e in zip(offsets[:-1], offsets[1:])]
  return out


def _numpy(tree):
  return jax.tree.map(np.asarray, tree)


def _stack(trees):
  return jax.tree.map(lambda *a: np.stack(a), *trees)  # numpy: no compiling


def _seed(tree, k):
  """The k-th of stacked problems or outputs."""
  return jax.tree.map(lambda a: a[k], tree)


# --- Brute force: every tag path of a row. -----------------------------------


def _path_scores(f_TxC, starts_T, trans, paths_PxN):
  """S(y) of each path over a row's n words, from the definition: start of
  each sentence's first tag, word scores, A inside a sentence, end[i] +
  start[j] between sentences, end of the last tag."""
  A, start, end = trans
  n = paths_PxN.shape[1]
  S = start[paths_PxN[:, 0]] + end[paths_PxN[:, -1]]
  for t in range(n):
    S = S + f_TxC[t, paths_PxN[:, t]]
    if t:
      i, j = paths_PxN[:, t - 1], paths_PxN[:, t]
      S = S + (end[i] + start[j] if starts_T[t] else A[i, j])
  return S


def _enumerate_row(f_TxC, mask_T, starts_T, trans):
  """(log Z, max S, argmax path) of one row by enumeration ((0, 0, []) for
  an empty row)."""
  n = int(mask_T.sum())
  if not n:
    return 0.0, 0.0, np.zeros(0, np.int64)
  C = f_TxC.shape[1]
  paths = np.array(list(itertools.product(range(C), repeat=n)))
  S = _path_scores(f_TxC, starts_T, trans, paths)
  top = S.max()
  return top + np.log(np.sum(np.exp(S - top))), top, paths[np.argmax(S)]


# --- Problems and what the suite computes on them. ---------------------------


def _as_jax(*arrays):
  return jax.tree.map(jnp.asarray, arrays)


def _unpacked(problem, rng):
  """(the problem with empty rows added, its sentences one to a row): both
  [U, T], U the number of sentences; padding random."""
  f, tags, mask, starts, trans = _numpy(problem)
  B, T, C = f.shape
  found = _sentences(mask, starts)
  U = len(found)
  f_u = 30.0 * rng.standard_normal((U, T, C))
  tags_u = rng.integers(0, C, (U, T), dtype=np.int32)
  mask_u = np.zeros((U, T), bool)
  starts_u = np.zeros((U, T), bool)
  for u, (r, o, n) in enumerate(found):
    f_u[u, :n], tags_u[u, :n] = f[r, o : o + n], tags[r, o : o + n]
    mask_u[u, :n], starts_u[u, 0] = True, True
  padded = (
    np.concatenate([f, f_u[B:]]),
    np.concatenate([tags, tags_u[B:]]),
    np.concatenate([mask, np.zeros_like(mask_u[B:])]),
    np.concatenate([starts, np.zeros_like(starts_u[B:])]),
    trans,
  )
  return _as_jax(*padded), _as_jax(f_u, tags_u, mask_u, starts_u, trans)


def _sentence_cases():
  """(name, model_cfg, objective, features): every objective with both
  models, each once with and once without feature rows."""
  cases = []
  for j, objective in enumerate(SENTENCE_OBJECTIVES):
    for i, (model, model_cfg) in enumerate(SENTENCE_MODELS.items()):
      features = (i + j) % 2 == 0
      name = f'{model}/{objective}' + ('/feat' if features else '')
      cases.append((name, model_cfg, objective, features))
  return cases


def _group_name(objective, layout):
  return f'{objective}/' + 'x'.join(map(str, layout))


def _suite_inputs():
  """Every problem of the suite, drawn in float64."""
  groups = {}
  for objective in OBJECTIVES:
    for layout in LAYOUTS:
      name = _group_name(objective, layout)
      groups[name] = _stack(
        [
          problems.sample_crf(_rng(name, k), *layout, get(objective))
          for k in range(SEEDS)
        ]
      )
  # Tied problems and one whose gold paths win by more than their cost
  # (the last): struct margin cases of one shape, vmapped.
  struct = [
    problems.sample_tied_crf(_rng('ties', k), 8, 6, 3) for k in range(SEEDS)
  ]
  struct.append(
    problems.sample_crf(
      _rng('inactive'), 8, 6, 3, get('struct_margin'), inactive=True
    )
  )
  packed = {}
  for objective in OBJECTIVES:
    rng = _rng('packed', objective)
    problem = problems.sample_crf(rng, 8, 7, 4, get(objective))
    packed[objective] = _stack(_unpacked(problem, rng))
  shapes = problems.SentenceShapes()
  sentences = {
    name: problems.sample_sentences(
      _rng('sentence', name),
      shapes,
      model_cfg,
      get(objective),
      features=features,
    )
    for name, model_cfg, objective, features in _sentence_cases()
  }
  return dict(
    groups=groups,
    struct=_stack(struct),
    packed=packed,
    sentences=sentences,
  )


def _decode_and_grads(problem, objective, decode=True):
  """The decodings of research.formulas.crf (or None) and derivations.crf_case's
  (manual, reference) for one problem."""
  if not decode:
    return None, derivations.crf_case(problem, get(objective))
  f, _, mask, starts, trans = problem
  score, path = crf.viterbi(f, mask, starts, trans)
  decoded = dict(
    log_z=crf.log_partition(f, mask, starts, trans),
    viterbi_score=score,
    viterbi_path=path,
    max_path_score=crf.max_path_score(f, mask, starts, trans),
    gold_score=crf.path_score(*problem),
  )
  return decoded, derivations.crf_case(problem, get(objective))


def _suite_program(inputs):
  def vmapped(objective, stacked, decode=True):
    return jax.vmap(
      functools.partial(_decode_and_grads, objective=objective, decode=decode)
    )(stacked)

  cases = {name: c for name, *c in _sentence_cases()}
  return dict(
    groups={
      # The brute force reads the decodings of the CRF problems.
      name: vmapped(name.split('/')[0], stacked, name.startswith('crf/'))
      for name, stacked in inputs['groups'].items()
    },
    struct=jax.vmap(
      functools.partial(derivations.crf_case, objective=get('struct_margin'))
    )(inputs['struct']),
    packed={
      objective: vmapped(objective, pair)
      for objective, pair in inputs['packed'].items()
    },
    sentences={
      name: derivations.sentence_case(
        p, model_cfg=cases[name][0], objective=get(cases[name][1])
      )
      for name, p in inputs['sentences'].items()
    },
  )


@pytest.fixture(scope='module')
def suite():
  """(inputs, outputs) as numpy float64, computed by one program."""
  with jax.enable_x64(True):
    inputs = _suite_inputs()
    outputs = derivations.jit_call(_suite_program, inputs)
    return _numpy(inputs), _numpy(outputs)


def _group_problems(suite):
  """(name, k, problem, decoded, (manual, reference)) of every seed of every
  random group."""
  inputs, outputs = suite
  for name, stacked in inputs['groups'].items():
    for k in range(SEEDS):
      decoded, grads = _seed(outputs['groups'][name], k)
      yield name, k, _seed(stacked, k), decoded, grads


def _failures(diffs):
  return [
    f'{d.name}: max_abs {d.max_abs:.1e} max_rel {d.max_rel:.1e} {d.note}'
    for d in diffs
    if not d.ok
  ]


# --- The layouts. -------------------------------------------------------------


def test_problems_cover_every_kind_of_row(suite):
  layouts = [p[2:4] for *_, p, _, _ in _group_problems(suite)]
  kinds = set()
  for mask, starts in layouts:
    for r in range(len(mask)):
      n_sentences, n_words = int(starts[r].sum()), int(mask[r].sum())
      if not n_words:
        kinds.add('empty')
        continue
      kinds.add('padded' if n_words < mask.shape[1] else 'full')
      kinds.add('several' if n_sentences > 1 else 'one')
    if 1 in [n for _, _, n in _sentences(mask, starts)]:
      kinds.add('one_word')
    # Words first, then padding; position 0 of a non-empty row starts.
    for mask_T, starts_T in zip(mask, starts):
      n = int(mask_T.sum())
      assert mask_T[:n].all() and not mask_T[n:].any()
      assert not (starts_T & ~mask_T).any()
      assert starts_T[0] == (n > 0)
  assert kinds == {'empty', 'padded', 'full', 'several', 'one', 'one_word'}


# --- Brute force. -------------------------------------------------------------


def test_log_partition_and_viterbi_equal_enumeration(suite):
  """log Z, the Viterbi score and path, max_path_score and the gold path's
  score S(y) of every row against enumerating every tag path of the row
  (boundaries scored end[i] + start[j])."""
  checked = 0
  for name, k, problem, out, _ in _group_problems(suite):
    if out is None:
      continue
    checked += 1
    f, tags, mask, starts, trans = problem
    for r in range(len(mask)):
      log_z, top, best = _enumerate_row(f[r], mask[r], starts[r], trans)
      at = f'{name} seed {k} row {r}'
      np.testing.assert_allclose(out['log_z'][r], log_z, 1e-12, err_msg=at)
      np.testing.assert_allclose(out['viterbi_score'][r], top, 1e-12)
      np.testing.assert_allclose(out['max_path_score'][r], top, 1e-12)
      n = len(best)
      np.testing.assert_array_equal(out['viterbi_path'][r, :n], best, at)
      if n:  # padding holds the last word's tag
        assert (out['viterbi_path'][r, n:] == best[-1]).all(), at
      gold = 0.0
      if n:
        gold = _path_scores(f[r], starts[r], trans, tags[r, None, :n])[0]
      np.testing.assert_allclose(out['gold_score'][r], gold, 1e-12)
  assert checked == len(LAYOUTS) * SEEDS


def test_partition_of_a_row_is_the_product_of_its_sentences(suite):
  for *_, (f, _, mask, starts, trans), _, _ in _group_problems(suite):
    for r in range(len(mask)):
      whole = _enumerate_row(f[r], mask[r], starts[r], trans)
      parts = [
        _enumerate_row(
          f[r, o : o + n], np.ones(n, bool), np.eye(1, n, dtype=bool)[0], trans
        )
        for row, o, n in _sentences(mask, starts)
        if row == r
      ]
      np.testing.assert_allclose(whole[0], sum(p[0] for p in parts), 1e-12)
      np.testing.assert_allclose(whole[1], sum(p[1] for p in parts), 1e-12)


# --- Hand-derived gradients against jax.grad. --------------------------------


@pytest.mark.parametrize('objective', OBJECTIVES)
def test_grads_equal_autodiff(suite, objective):
  """f, A, start, end and the per-row loss J at rtol 1e-10, on every seed
  of every layout."""
  checked = 0
  for name, k, _, _, (manual, reference) in _group_problems(suite):
    if name.startswith(objective + '/'):
      diffs = autodiff.compare(manual, reference, RTOL)
      assert {d.name for d in diffs} == {'f', 'A', 'start', 'end', 'J'}
      assert not _failures(diffs), (name, k, _failures(diffs))
      checked += 1
  assert checked == len(LAYOUTS) * SEEDS


def test_padding_gets_exactly_zero_gradient(suite):
  """dJ/df is exactly 0 at padding (which has scores of scale 30), by hand
  and by jax.grad, and an empty row has J = 0."""
  for name, k, problem, _, grads in _group_problems(suite):
    f, _, mask, *_ = problem
    assert np.abs(f[~mask]).max() > 10
    assert (~mask[:, 0]).any()  # an empty row
    for side in grads:
      assert not side['f'][~mask].any(), (name, k)
      assert not side['J'][~mask[:, 0]].any(), (name, k)


def test_inactive_struct_margin_gives_exact_zeros(suite):
  """Every gold path beats the others by more than its Hamming cost."""
  manual, reference = _seed(suite[1]['struct'], SEEDS)
  J_manual, J_reference = manual.pop('J'), reference.pop('J')
  assert not _failures(autodiff.compare(manual, reference, exact_zero=True))
  np.testing.assert_allclose(J_manual, 0.0, atol=1e-12)
  np.testing.assert_allclose(J_reference, 0.0, atol=1e-12)


def test_struct_margin_ties_split_as_autodiff(suite):
  """Scores and transitions in {0, 1}: best paths tie almost everywhere,
  and the manual subgradient is still the one jax.grad takes (each max
  splits its unit evenly among tied arguments)."""
  for k in range(SEEDS):
    manual, reference = _seed(suite[1]['struct'], k)
    assert not _failures(autodiff.compare(manual, reference, 1e-12)), k
    assert (manual['f'] != np.round(manual['f'])).any()  # ties were split


# --- Packed rows equal one sentence per row. ---------------------------------


@pytest.mark.parametrize('objective', OBJECTIVES)
def test_packed_rows_equal_one_sentence_per_row(suite, objective):
  """Same total loss, the same gradients w.r.t. A, start, end and each
  sentence's scores, the same decoded paths, by hand and by jax.grad."""
  inputs, outputs = suite
  packed, unpacked = (_seed(inputs['packed'][objective], k) for k in (0, 1))
  (pk_decode, pk_grads), (up_decode, up_grads) = (
    _seed(outputs['packed'][objective], k) for k in (0, 1)
  )
  found_packed = _sentences(*packed[2:4])
  found_unpacked = _sentences(*unpacked[2:4])
  assert len(found_packed) == len(found_unpacked)
  assert int(packed[2][:, 0].sum()) < len(found_packed)  # rows shared
  for pk, up in zip(pk_grads, up_grads):  # manual, then reference
    np.testing.assert_allclose(pk['J'].sum(), up['J'].sum(), rtol=1e-12)
    for key in ('A', 'start', 'end'):
      np.testing.assert_allclose(pk[key], up[key], rtol=1e-12, atol=1e-14)
    for (r, o, n), (u, _, _) in zip(found_packed, found_unpacked):
      np.testing.assert_allclose(
        pk['f'][r, o : o + n], up['f'][u, :n], rtol=1e-12, atol=1e-14
      )
  for key in ('log_z', 'viterbi_score', 'max_path_score', 'gold_score'):
    np.testing.assert_allclose(
      pk_decode[key].sum(), up_decode[key].sum(), rtol=1e-12
    )
  for (r, o, n), (u, _, _) in zip(found_packed, found_unpacked):
    np.testing.assert_array_equal(
      pk_decode['viterbi_path'][r, o : o + n],
      up_decode['viterbi_path'][u, :n],
    )


# --- The sentence task's gradients. -------------------------------------------


@pytest.mark.parametrize('objective', SENTENCE_OBJECTIVES)
def test_sentence_batch_grads_equal_autodiff(suite, objective):
  """manual_grads.sentence_batch_grads against jax.grad of
  research.training.sequence.batch_grads' loss: both models, with and without
  feature rows; every dense key, E, the feature rows and the loss."""
  names = [name for name, _, obj, _ in _sentence_cases() if obj == objective]
  assert {'/feat' in n for n in names} == {True, False}
  for name in names:
    manual, reference = suite[1]['sentences'][name]
    diffs = autodiff.compare(manual, reference, RTOL)
    assert not _failures(diffs), (name, _failures(diffs))
    weights = {'V', 'b', 'W', 'c'} if 'hidden' in name else {'W', 'c'}
    expected = weights | {'L_case', 'E', 'J_mean'}
    if objectives.get(objective).sentence_level:
      expected |= {'A', 'start', 'end'}
    if '/feat' in name:
      expected |= {'feat'}
    assert {d.name for d in diffs} == expected, name


def test_split_window_grad_with_feature_rows_follows_concat_window():
  """Slot j of a window is [L[w_j]; L_case[c_j]; L_feat[f_j1]; ...]: the
  split gives each part back, the feature rows as [N, K, F*g]."""
  E_NxKxd = jnp.arange(2 * 3 * 4.0).reshape(2, 3, 4)
  C_NxKxe = -jnp.arange(2 * 3 * 2.0).reshape(2, 3, 2)
  F_NxKxFxg = 100 + jnp.arange(2 * 3 * 2 * 3.0).reshape(2, 3, 2, 3)
  x_NxD = model_lib.concat_window(E_NxKxd, C_NxKxe, F_NxKxFxg)
  dE, dC, dF = mg.split_window_grad(x_NxD, 4, 2, feature_width=6)
  np.testing.assert_array_equal(dE, E_NxKxd)
  np.testing.assert_array_equal(dC, C_NxKxe)
  np.testing.assert_array_equal(dF.reshape(F_NxKxFxg.shape), F_NxKxFxg)
  assert len(mg.split_window_grad(x_NxD, 4, 8)) == 2  # no features
  with pytest.raises(ValueError, match='not K'):
    mg.split_window_grad(x_NxD, 4, 2, feature_width=5)


def test_sentence_batch_grads_refuses_dropout():
  model_cfg = model_lib.ModelConfig('softmax', dropout=0.5)
  dense = {
    'L_case': jnp.zeros((2, 1)),
    'W': jnp.zeros((3, 3)),
    'c': jnp.zeros(3),
  }
  with pytest.raises(ValueError, match='dropout'):
    mg.sentence_batch_grads(
      dense,
      jnp.zeros((3, 1, 2)),
      jnp.zeros((3, 1), jnp.int32),
      None,
      jnp.zeros((1, 3), jnp.int32),
      jnp.ones((1, 3), bool),
      jnp.eye(1, 3, dtype=bool),
      model_cfg,
      'crf',
    )


# --- The comparison can fail: deliberately wrong derivations. ---------------


def _backward_without_end(f_BxTxC, mask_BxT, starts_BxT, trans):
  """crf._backward with beta = 0 at a row's last word instead of end."""
  f_T, mask_T, starts_T = crf._time_major(f_BxTxC, mask_BxT, starts_BxT)
  B, C = f_T.shape[1:]
  beta_last = jnp.zeros((B, C), f_BxTxC.dtype)  # the mistake: not end

  def step(beta_next_BxC, inputs):
    f_next, mask_next, starts_next = inputs
    M = crf._step_transitions(trans, starts_next)
    new = jax.nn.logsumexp(M + (f_next + beta_next_BxC)[:, None, :], axis=2)
    beta_BxC = jnp.where(mask_next[:, None], new, beta_last)
    return beta_BxC, beta_BxC

  _, betas = jax.lax.scan(
    step, beta_last, (f_T[1:], mask_T[1:], starts_T[1:]), reverse=True
  )
  return jnp.concatenate([betas, beta_last[None]], 0)


def _crf_grads_without_expected_end(f, tags, mask, starts, trans):
  """dJ/dend = - gold counts: the expected end counts left out."""
  J, df, grads = crf.crf_grads(f, tags, mask, starts, trans)
  _, gold = crf.path_indicators(tags, mask, starts, f.shape[2], f.dtype)
  return J, df, grads._replace(end=-gold.end)


_path_indicators = crf.path_indicators


def _gold_counts_across_boundaries(tags, mask, starts, num_classes, dtype):
  """path_indicators counting the i -> j between two sentences of a row as a
  transition A[i, j] (the packed layout's boundaries forgotten)."""
  onehot, counts = _path_indicators(tags, mask, starts, num_classes, dtype)
  boundary = (mask[:, 1:] & starts[:, 1:]).astype(dtype)[..., None]
  extra = jnp.einsum('bti,btj->ij', onehot[:, :-1] * boundary, onehot[:, 1:])
  return onehot, counts._replace(A=counts.A + extra)


def _no_cost(tags, mask, num_classes, dtype):
  return jnp.zeros(tags.shape + (num_classes,), dtype)


def _struct_margin_grads_without_cost(*args):
  """struct_margin_grads of max_y S(y) - S(y_gold): no Hamming cost."""
  with pytest.MonkeyPatch.context() as m:
    m.setattr(crf, 'hamming_costs', _no_cost)
    return crf.struct_margin_grads(*args)


def _viterbi_path_indicators(f, mask, starts, trans):
  """best_path_indicators as the indicators of Viterbi's path: where best
  paths tie, the first argmax's alone, not jax.grad's shares."""
  best, path = crf.viterbi(f, mask, starts, trans)
  hat, counts = crf.path_indicators(path, mask, starts, f.shape[2], f.dtype)
  return best, hat, counts


def _with_grad(name, grad):
  """patch(m) putting `grad` in place of objective `name`'s hand-derived
  gradient in the registry."""
  wrong = dataclasses.replace(objectives.REGISTRY[name], grad=grad)
  return lambda m: m.setitem(objectives.REGISTRY, name, wrong)


# name -> (patch(m), problem, the case, {the leaves that must fail}); every
# other leaf must pass.
WRONG = {
  'crf_beta_without_end': (
    lambda m: m.setattr(crf, '_backward', _backward_without_end),
    'crf',
    'crf_grads',
    {'f', 'A', 'start', 'end'},
  ),
  'crf_without_expected_end': (
    _with_grad('crf', _crf_grads_without_expected_end),
    'crf',
    'crf_grads',
    {'end'},
  ),
  'crf_gold_counts_across_boundaries': (
    lambda m: m.setattr(crf, 'path_indicators', _gold_counts_across_boundaries),
    'crf',
    'crf_grads',
    {'A'},
  ),
  'crf_without_expected_end/sentence_batch_grads': (
    _with_grad('crf', _crf_grads_without_expected_end),
    'hidden/crf',
    'sentence_case',
    {'end'},
  ),
  'struct_margin_without_cost': (
    _with_grad('struct_margin', _struct_margin_grads_without_cost),
    'struct_margin',
    'crf_grads',
    {'f', 'A', 'start', 'end', 'J'},
  ),
  'struct_margin_first_argmax_at_ties': (
    lambda m: m.setattr(crf, 'best_path_indicators', _viterbi_path_indicators),
    'struct_margin/ties',
    'crf_grads',
    {'f', 'A', 'start', 'end'},
  ),
}


def _gold_is_the_best_path(rng, rows, T, C):
  """A struct-margin problem whose gold path is the best path of S (not of
  S + Delta): only the Hamming cost makes its subgradient nonzero."""
  for _ in range(problems.MAX_TRIES):
    problem = problems.sample_crf(rng, rows, T, C, get('crf'))
    f, tags, mask, starts, trans = jax.tree.map(np.array, problem)
    for r in range(rows):
      best = _enumerate_row(f[r], mask[r], starts[r], trans)[2]
      tags[r, : len(best)] = best
    cost = (1.0 - np.eye(C)[tags]) * mask[..., None]
    gaps = [problems.viterbi_gap(g, mask, starts, trans) for g in (f, f + cost)]
    if min(gaps) >= problems.KINK_TOL:
      return _as_jax(f, tags, mask, starts, trans)
  raise RuntimeError('no problem away from ties')


def _wrong_problem(problem_name):
  rng = _rng('wrong', problem_name)
  if problem_name == 'crf':
    problem = problems.sample_crf(rng, 6, 6, 4, get('crf'))
    return (problem,), dict(objective='crf')
  if problem_name == 'struct_margin':
    args = (_gold_is_the_best_path(rng, 8, 6, 3),)
    return args, dict(objective='struct_margin')
  if problem_name == 'struct_margin/ties':
    args = (problems.sample_tied_crf(rng, 6, 6, 4),)
    return args, dict(objective='struct_margin')
  model, objective = problem_name.split('/')
  model_cfg = SENTENCE_MODELS[model]
  shapes = problems.SentenceShapes()
  args = (problems.sample_sentences(rng, shapes, model_cfg, get(objective)),)
  return args, dict(model_cfg=model_cfg, objective=objective)


@pytest.fixture(scope='module')
def wrong_suite():
  """{variant: [Diff]}: each wrong derivation traced with its patch in
  place, all into one program, and compared as the real ones are."""
  cases = {
    'crf_grads': by_name(derivations.crf_case),
    'sentence_case': by_name(derivations.sentence_case),
  }
  with jax.enable_x64(True):
    plan = [(name, *_wrong_problem(w[1])) for name, w in WRONG.items()]

    def program(all_args):
      out = []
      for (name, _, static), args in zip(plan, all_args):
        patch, _, case, _ = WRONG[name]
        with pytest.MonkeyPatch.context() as m:
          patch(m)
          out.append(cases[case](*args, **static))
      return out

    outs = derivations.jit_call(program, [args for _, args, _ in plan])
  return {
    name: autodiff.compare(manual, reference, RTOL)
    for (name, _, _), (manual, reference) in zip(plan, outs)
  }


@pytest.mark.parametrize('name', list(WRONG))
def test_wrong_derivation_is_reported(wrong_suite, name):
  diffs = wrong_suite[name]
  failed = {d.name for d in diffs if not d.ok}
  assert failed == WRONG[name][3], diffs
  # By far more than the tolerance, not by rounding.
  assert min(d.max_rel for d in diffs if not d.ok) > 1e-3


# --- Training with the manual gradients. -------------------------------------


def _sentence_windows(
  rng, lengths, vocab, num_classes, casings, feature_rows, char_rows=0
):
  n = int(np.sum(lengths))
  K = 3  # half-width 1
  feats = spellings = None
  if feature_rows:
    feats = rng.integers(0, feature_rows, (n, K, 2)).astype(np.int32)
  if char_rows:  # left-aligned spellings of 0 to 5 characters
    spellings = rng.integers(1, char_rows, (n, 5)).astype(np.int32)
    spellings[np.arange(5) >= rng.integers(0, 6, (n, 1))] = 0
  return vocab_lib.Windows(
    rng.integers(0, vocab, (n, K)).astype(np.int32),
    rng.integers(0, casings, (n, K)).astype(np.int32),
    rng.integers(0, num_classes, n).astype(np.int32),
    np.repeat(np.arange(len(lengths)), lengths).astype(np.int32),
    feats,
    spellings,
  )


@pytest.mark.parametrize(
  'objective,model,features,chars',
  [
    ('crf', 'hidden', True, False),
    # The softmax model starts at W = 0, c = 0 and the transitions at 0:
    # every path ties at the first step.
    ('struct_margin', 'softmax', False, False),
    ('max_margin', 'softmax', True, False),
    ('crf', 'hidden', False, True),  # the character CNN
    ('struct_margin', 'dilated', True, False),  # windows of windows
  ],
)
def test_fit_with_manual_grads_equals_autodiff(
  objective, model, features, chars
):
  """A few float32 steps of research.training.sequence's task (SGD, L2 on
  everything, several sentences a row) give the same parameters with either
  gradient, to rtol 1e-5: with full float32 matrix products (a GPU's default
  TF32 rounds both sides' products to 10 mantissa bits)."""
  rng = _rng('fit', objective, model)
  lengths = [5, 3, 1, 4, 6, 2, 7, 1, 3, 5, 2, 4]
  vocab, num_classes, feature_rows = 11, 4, 9 if features else 0
  char_rows = 6 if chars else 0
  train = _sentence_windows(
    rng, lengths, vocab, num_classes, 8, feature_rows, char_rows
  )
  model_cfg = model_lib.ModelConfig(
    model, 'tanh', window=1, hidden=8, char_dim=3, char_filters=4
  )
  cfg = classifier.TrainConfig(
    objective=objective,
    optimizer='sgd',
    batch_size=16,
    sparse=False,
    l2_embeddings=True,
    l2_biases=True,
  )
  params = model_lib.init_params(
    jax.random.key(0),
    model_cfg,
    vocab_size=vocab,
    num_classes=num_classes,
    embed_dim=4,
    case_dim=3,
    feature_rows=feature_rows,
    feature_kinds=2,
    feature_dim=2,
    char_rows=char_rows,
  )
  if objectives.get(objective).sentence_level:
    params = sequence.init_transitions(params, num_classes)
  trained = {}
  for grad in ('autodiff', 'manual'):
    with jax.default_matmul_precision('float32'):
      stacked, _, stats = fit_sentences(
        engine.stack([params]),
        train,
        lengths,
        engine.Hyper([0.1], [1e-3]),
        [0],
        model_cfg,
        cfg._replace(grad=grad),
        epochs=3,
        T=8,
        compiler_options=tuple(derivations.fast_compile().items()),
        log=lambda _: None,
      )
    trained[grad] = engine.unstack(stacked, 0)
    assert stats['rows_per_step'] == 2 and stats['steps'] == 9
    assert stats['rows'] < len(lengths)  # several sentences a row
  rows = autodiff.compare(trained['manual'], trained['autodiff'], rtol=1e-5)
  assert all(d.ok for d in rows), rows
  moved = autodiff.compare(params, trained['autodiff'], rtol=1e-3)
  assert not any(d.ok for d in moved)  # training did change every leaf
