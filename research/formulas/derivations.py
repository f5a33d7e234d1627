r"""Hand-derived gradients against autodiff: one row per formula and parameter.

Every formula of research/formulas/manual_grads.py is evaluated in float64 on
small random problems (a repeated word inside a window; max-margin cases kept
away from the hinge and from ties, with both active and inactive windows) and
compared, leaf by leaf, with `jax.grad` of research.formulas.model and
research.formulas.losses (`research.formulas.autodiff`). The rows of
`check_all`:

  softmax/OBJ, hidden/G/OBJ       W, c (V, b), x, L, L_case, J (the losses)
  .../per_window                  the same per window, against
                                  jax.vmap(jax.grad(per-window loss))
  scorer/G/window_margin          U, W, b, x, x_corrupt, L, L_case, J
  .../inactive                    every hinge inactive: gradients and
                                  losses must be exactly 0
  l2/MODEL/CONVENTION             lambda theta on research.formulas.losses'
                                  regularized_keys, 0 elsewhere
  objective/MODEL/OBJ/VECTORS     training.classifier.training_objective
                                  (data + L2, word vectors fine-tuned or
                                  frozen)
  batch_grads/MODEL/OBJ           manual_grads.batch_grads against the
                                  autodiff branch of
                                  research.training.classifier.batch_grads, E
                                  included
  train.batch_grads/MODEL/OBJ     the training step's data gradients,
                                  research.training.classifier.batch_grads:
                                  grad='manual' against 'autodiff' (the
                                  optimizer adds L2, research.training.optim)
  crf_grads                       formulas.crf's forward-backward: f, A,
                                  start, end, J (per row) against jax.grad
                                  of crf_loss, on packed rows of every kind
                                  (`problems.packed_layout`)
  struct_margin_grads             the subgradient at the cost-augmented
                                  best path against jax.grad of
                                  struct_margin_loss
  .../ties                        scores and transitions in {0, 1}: tied
                                  best paths share it as jax.grad splits
                                  them
  .../inactive                    every gold path wins by more than its
                                  cost: gradients exactly 0
  sentence_batch_grads/MODEL/OBJ  manual_grads.sentence_batch_grads against
                                  the autodiff branch of
                                  research.training.sequence.batch_grads (crf,
                                  struct_margin, xent, max_margin): dense
                                  params, E, J_mean (and feat, the feature
                                  rows, for .../feat)
  char_cnn/...                    research.formulas.chars: the character CNN's
                                  W_char, b_char, L_char (dense) and E_char
                                  (each looked-up row) under a random
                                  linear loss sum(R * h), against jax.grad
                                  of char_features; words of length 1,
                                  shorter than the width and of max_len;
                                  .../ties: integer parameters and repeated
                                  characters, so tied positions share the
                                  max's gradient as jax.grad splits it;
                                  .../windows: spellings [N, K, P]

Each row holds the max absolute and relative difference (relative: max|a - m| /
max(max|a|, tiny), a autodiff, m manual); it passes when the relative one is <=
rtol (`format_row` prints it). The shapes are `Shapes`, fixed and small
(`SentenceShapes` for the sentence rows); the corrupt windows of the scorer come
from research.training.window_scorer.corrupt_windows (any id drawn, minval=0).
research/formulas/crf.py broadcasts its [C] scores against [B, C] arrays, so the
sentence-level cases run without the strict rank promotion of the others."""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np

from research.formulas import autodiff
from research.formulas import char_problems
from research.formulas import chars as chars_lib
from research.formulas import derivation_problems as problems
from research.formulas import dilated as dilated_lib
from research.formulas import losses
from research.formulas import manual_grads as mg
from research.formulas import model as model_lib
from research.formulas import objectives
from research.training import classifier
from research.training import sequence


def sentence_objectives():
  """Every objective the sentence task trains with: the sentence-level
  ones, then the window-level ones summed over the words."""
  return objectives.records('sentence') + objectives.records('window')


CRF_ROWS, CRF_ROW_LENGTH, CRF_CLASSES = 6, 6, 4  # the crf_grads problems

# Each check runs once on tiny arrays: compile fast rather than well (these
# XLA:CPU options cut the CPU compile time about threefold).
CPU_FAST_COMPILE = {
  'xla_backend_optimization_level': 0,
  'xla_llvm_disable_expensive_passes': True,
  'xla_cpu_use_fusion_emitters': False,
}


def fast_compile():
  """The XLA options that compile fast on the default backend: those of
  CPU_FAST_COMPILE on a CPU, none elsewhere (they are XLA:CPU's)."""
  return dict(CPU_FAST_COMPILE) if jax.default_backend() == 'cpu' else {}


def _sub(params, keys):
  return {k: params[k] for k in keys}


def _strict():
  """The manual side runs with implicit rank promotion refused."""
  return jax.numpy_rank_promotion('raise')


def jit_call(fn, *args, **static):
  """fn(*args, **static) as one compiled program, traced afresh each call
  (so a changed module function is never served from an earlier trace)."""
  lowered = jax.jit(functools.partial(fn, **static)).lower(*args)
  try:
    compiled = lowered.compile(fast_compile())
  except Exception:
    compiled = lowered.compile()  # an XLA without these options
  return compiled(*args)


def classifier_cases(problem, model_cfg, objective, reduces=mg.REDUCTIONS):
  """{suffix: (manual, reference)} for one classifier and objective.

  '' (reduce 'mean'): gradients of the mean loss w.r.t. the weights, x, L
  and L_case, and the losses J (per window) and J_mean; '/per_window'
  (reduce 'none'): per-window gradients against
  jax.vmap(jax.grad(per-window loss)).
  """
  p, words, casing, y = problem
  x = model_lib.window_vectors(p['L'], p['L_case'], words, casing)
  weights = _sub(p, [k for k in p if k not in losses.EMBEDDING_KEYS])
  window_losses = functools.partial(
    autodiff.classifier_window_losses, model_cfg=model_cfg, objective=objective
  )
  cases = {}
  for reduce in reduces:
    with _strict():
      J, grads, dx = mg.classifier_grads(p, x, y, model_cfg, objective, reduce)
    J_ref, grads_ref, (dx_ref,) = autodiff.autodiff_grads(
      window_losses, weights, (x,), (y,), reduce
    )
    manual = dict(grads, x=dx, J=J)
    reference = dict(grads_ref, x=dx_ref, J=J_ref)
    if reduce == 'mean':
      with _strict():
        loss, ids_grads = mg.classifier_loss_and_grads(
          p, words, casing, y, model_cfg, objective
        )
      ids_ref = jax.grad(
        lambda p: classifier.window_losses(
          p, p['L'][words], casing, y, model_cfg, objective
        ).mean()
      )(p)
      manual.update(L=ids_grads['L'], L_case=ids_grads['L_case'])
      reference.update(L=ids_ref['L'], L_case=ids_ref['L_case'])
      manual['J_mean'], reference['J_mean'] = loss, jnp.mean(J_ref)
    cases['' if reduce == 'mean' else '/per_window'] = (manual, reference)
  return cases


def scorer_cases(problem, nonlinearity, reduces=mg.REDUCTIONS):
  """{suffix: (manual, reference)} for the window scorer (as above, with
  x_corrupt the gradient w.r.t. the corrupt windows)."""
  p, words, casing, cwords, ccasing = problem
  N, M, K = cwords.shape
  x = model_lib.window_vectors(p['L'], p['L_case'], words, casing)
  xc = model_lib.window_vectors(
    p['L'], p['L_case'], cwords.reshape(-1, K), ccasing.reshape(-1, K)
  ).reshape(N, M, -1)
  weights = _sub(p, ('U', 'W', 'b'))
  window_losses = functools.partial(
    autodiff.scorer_window_losses, nonlinearity=nonlinearity
  )
  cases = {}
  for reduce in reduces:
    with _strict():
      J, grads, dx, dxc = mg.scorer_grads(p, x, xc, nonlinearity, 1.0, reduce)
    J_ref, grads_ref, (dx_ref, dxc_ref) = autodiff.autodiff_grads(
      window_losses, weights, (x, xc), (), reduce
    )
    manual = dict(grads, x=dx, x_corrupt=dxc, J=J)
    reference = dict(grads_ref, x=dx_ref, x_corrupt=dxc_ref, J=J_ref)
    if reduce == 'mean':
      with _strict():
        loss, ids_grads = mg.scorer_loss_and_grads(
          p, words, casing, cwords, ccasing, nonlinearity
        )
      ids_ref = jax.grad(
        lambda p: autodiff.scorer_id_losses(
          p, words, casing, cwords, ccasing, nonlinearity
        ).mean()
      )(p)
      manual.update(L=ids_grads['L'], L_case=ids_grads['L_case'])
      reference.update(L=ids_ref['L'], L_case=ids_ref['L_case'])
      manual['J_mean'], reference['J_mean'] = loss, jnp.mean(J_ref)
    cases['' if reduce == 'mean' else '/per_window'] = (manual, reference)
  return cases


L2_CONVENTIONS = {
  'weights': (False, False),
  'weights+vectors': (True, False),
  'weights+biases': (False, True),
  'all': (True, True),
}


def l2_case(params, lam, embeddings, biases):
  """(manual, reference) of the L2 term's gradient (and value, 'value')."""
  with _strict():
    value, grads = mg.l2_value_and_grads(params, lam, embeddings, biases)
  ref_value, ref = jax.value_and_grad(losses.l2_penalty)(
    params, lam, embeddings, biases
  )
  return dict(grads, value=value), dict(ref, value=ref_value)


def objective_case(problem, l2, model_cfg, cfg, objective):
  """(manual, reference) of research.training.classifier.training_objective's
  gradient
  w.r.t. the trainable parameters (L left out when cfg.freeze_embeddings)."""
  p, words, casing, y = problem
  with _strict():
    value, grads = mg.objective_grads(
      p, words, casing, y, l2, model_cfg, cfg, objective
    )
  ref_value, ref = jax.value_and_grad(classifier.training_objective)(
    p, words, casing, y, l2, model_cfg, cfg, objective
  )
  if cfg.freeze_embeddings:
    del ref['L']
  return dict(grads, value=value), dict(ref, value=ref_value)


def batch_grads_case(problem, model_cfg, objective):
  """(manual, reference): manual_grads.batch_grads against the autodiff
  branch of research.training.classifier.batch_grads (no L2)."""
  p, words, casing, y = problem
  dense = _sub(p, [k for k in p if k != 'L'])
  E = p['L'][words]
  with _strict():
    loss, g_dense, g_E = mg.batch_grads(
      dense, E, casing, y, model_cfg, objective
    )
  cfg = classifier.TrainConfig(objective=objective.name, grad='autodiff')
  ref_loss, ref_dense, ref_E = classifier.batch_grads(
    dense, E, casing, y, model_cfg, cfg, objective, None
  )
  return (
    dict(g_dense, E=g_E, J_mean=loss),
    dict(ref_dense, E=ref_E, J_mean=ref_loss),
  )


def hook_case(problem, model_cfg, cfg, objective):
  """(manual, reference): research.training.classifier.batch_grads with
  grad='manual' against grad='autodiff' (data gradients: the optimizer adds
  L2); E only when the word vectors are fine-tuned (autodiff gives None
  when frozen)."""
  p, words, casing, y = problem
  dense = _sub(p, [k for k in p if k != 'L'])
  E = p['L'][words]
  with _strict():
    loss, g_dense, g_E = classifier.batch_grads(
      dense, E, casing, y, model_cfg, cfg._replace(grad='manual'), objective,
      None,
    )  # fmt: skip
  ref_loss, ref_dense, ref_E = classifier.batch_grads(
    dense, E, casing, y, model_cfg, cfg._replace(grad='autodiff'), objective,
    None,
  )  # fmt: skip
  manual, reference = (
    dict(g_dense, J_mean=loss),
    dict(ref_dense, J_mean=ref_loss),
  )
  if ref_E is not None:
    manual['E'], reference['E'] = g_E, ref_E
  return manual, reference


def crf_case(problem, objective, with_loss=True):
  """(manual, reference): the sentence-level objective's hand-derived
  `grad` (research.formulas.objectives; f, A, start, end and the per-row loss J)
  against jax.grad of its `loss` summed over the rows."""
  f, tags, mask, starts, trans = problem
  J, df, g = objective.grad(f, tags, mask, starts, trans)

  def loss(f, trans):
    return objective.loss(f, tags, mask, starts, trans)

  J_ref = loss(f, trans)
  df_ref, g_ref = jax.grad(lambda *a: jnp.sum(loss(*a)), (0, 1))(f, trans)
  manual = dict(f=df, **g._asdict())
  reference = dict(f=df_ref, **g_ref._asdict())
  if with_loss:
    manual['J'], reference['J'] = J, J_ref
  return manual, reference


def sentence_case(problem, model_cfg, objective):
  """(manual, reference): manual_grads.sentence_batch_grads against the
  autodiff branch of research.training.sequence.batch_grads (no L2): every dense
  key, E, J_mean and, with feature rows, feat."""
  dense, E, casing, feat, tags, mask, starts = problem
  args = (dense, E, casing, feat, tags, mask, starts, model_cfg)
  if objective.sentence_level:
    loss, g_dense, g_E, g_feat, _ = mg.sentence_batch_grads(*args, objective)
  else:
    with _strict():
      loss, g_dense, g_E, g_feat, _ = mg.sentence_batch_grads(*args, objective)
  cfg = classifier.TrainConfig(objective=objective.name, grad='autodiff')
  ref_loss, ref_dense, ref_E, ref_feat, _ = sequence.batch_grads(
    *args, cfg, objective, None
  )
  manual = dict(g_dense, E=g_E, J_mean=loss)
  reference = dict(ref_dense, E=ref_E, J_mean=ref_loss)
  if feat is not None:
    manual['feat'], reference['feat'] = g_feat, ref_feat
  return manual, reference


def sentence_plan(rng, shapes=None):
  """The sentence-level checks of `make_plan` (its last rows)."""
  shapes = shapes or problems.SentenceShapes()
  plan = []
  layout = (CRF_ROWS, CRF_ROW_LENGTH, CRF_CLASSES)
  struct_margin = objectives.get('struct_margin')
  for objective in objectives.records('sentence'):
    problem = problems.sample_crf(rng, *layout, objective)
    plan.append(
      (
        f'{objective.name}_grads',
        crf_case,
        (problem,),
        dict(objective=objective),
        False,
      )
    )
  plan.append(
    (
      'struct_margin_grads/ties',
      crf_case,
      (problems.sample_tied_crf(rng, *layout),),
      dict(objective=struct_margin),
      False,
    )
  )
  problem = problems.sample_crf(rng, *layout, struct_margin, inactive=True)
  plan.append(
    (
      'struct_margin_grads/inactive',
      crf_case,
      (problem,),
      dict(objective=struct_margin, with_loss=False),
      True,
    )
  )
  for i, (tag, model_cfg) in enumerate(problems.sentence_models()):
    for j, objective in enumerate(sentence_objectives()):
      features = (i + j) % 2 == 0
      problem = problems.sample_sentences(
        rng, shapes, model_cfg, objective, features=features
      )
      plan.append(
        (
          f'sentence_batch_grads/{tag}/{objective.name}'
          + ('/feat' if features else ''),
          sentence_case,
          (problem,),
          dict(model_cfg=model_cfg, objective=objective),
          False,
        )
      )
  return plan


def char_case(problem):
  """(manual, reference): research.formulas.chars.char_backward (and
  param_grads) against jax.grad of the linear loss sum(R * h) of char_features,
  w.r.t. the parameters and (E_char) of char_features_of_rows w.r.t. each
  looked-up row L_char[chars]."""
  p, chars, R = problem
  with _strict():
    _, cache = chars_lib.char_features(
      p['L_char'], p['W_char'], p['b_char'], chars
    )
    grads = chars_lib.char_backward(p['W_char'], chars, cache, R)
    manual = dict(
      chars_lib.param_grads(grads, p['L_char'].shape[0]), E_char=grads.rows
    )

  def loss(p):
    h, _ = chars_lib.char_features(p['L_char'], p['W_char'], p['b_char'], chars)
    return jnp.sum(R * h)

  def rows_loss(E):
    h, _ = chars_lib.char_features_of_rows(E, p['W_char'], p['b_char'], chars)
    return jnp.sum(R * h)

  reference = jax.grad(loss)(p)
  reference['E_char'] = jax.grad(rows_loss)(p['L_char'][chars])
  return manual, reference


def sentence_chars_case(problem, objective):
  """(manual, reference): manual_grads.sentence_batch_grads with the
  character CNN against the autodiff branch of sequence.batch_grads: every
  dense key (W_char, b_char too), E, the character rows E_char, J_mean."""
  dense, E, casing, tags, mask, starts, char_rows = problem
  chars = sequence.CharRows(*char_rows)
  model_cfg = model_lib.ModelConfig('hidden', 'tanh', window=1)
  args = (dense, E, casing, None, tags, mask, starts, model_cfg)
  strict = not objective.sentence_level  # crf broadcasts
  with _strict() if strict else contextlib.nullcontext():
    loss, g_dense, g_E, _, g_char = mg.sentence_batch_grads(
      *args, objective, chars
    )
  cfg = classifier.TrainConfig(objective=objective.name, grad='autodiff')
  ref_loss, ref_dense, ref_E, _, ref_char = sequence.batch_grads(
    *args, cfg, objective, None, chars
  )
  manual = dict(g_dense, E=g_E, E_char=g_char, J_mean=loss)
  reference = dict(ref_dense, E=ref_E, E_char=ref_char, J_mean=ref_loss)
  return manual, reference


def dilated_case(problem, repeats):
  """(manual, reference): research.formulas.dilated.encode_backward against
  jax.grad of the linear loss sum(R * h) of encode, w.r.t. W_dil, b_dil and
  the input a (float64; the rows' relus kept away from 0)."""
  params, a, starts, mask, R = problem
  with _strict():
    _, caches = dilated_lib.encode(params, a, starts, mask, repeats)
    da, grads = dilated_lib.encode_backward(params, caches, R)

  def loss(params, a):
    h, _ = dilated_lib.encode(params, a, starts, mask, repeats)
    return jnp.sum(R * h)

  ref_params, ref_a = jax.grad(loss, (0, 1))(params, a)
  return dict(grads, a=da), dict(ref_params, a=ref_a)


def dilated_plan(rng):
  """The dilated encoder's checks (the last rows of `make_plan`): 3
  layers once, 2 layers applied three times (a shared block), on rows of
  several sentences, a row of one long sentence and padding."""
  plan = []
  for layers, repeats in ((3, 1), (2, 3)):
    problem = problems.sample_dilated(rng, layers, repeats)
    plan.append(
      _row(
        f'dilated/layers={layers}/repeats={repeats}',
        dilated_case,
        (problem,),
        dict(repeats=repeats),
      )
    )
  return plan


def char_plan(rng):
  """The character CNN's checks (the last rows of `make_plan`)."""
  sentences = [
    _row(
      f'sentence_batch_grads/chars/{objective.name}',
      sentence_chars_case,
      (char_problems.sample_sentence_chars(rng, objective),),
      dict(objective=objective),
    )
    for objective in map(objectives.get, ('crf', 'xent'))
  ]
  return sentences + [
    _row('char_cnn/width=3', char_case, (char_problems.sample_chars(rng),), {}),
    _row(
      'char_cnn/width=5',
      char_case,
      (char_problems.sample_chars(rng, width=5),),
      {},
    ),
    _row(
      'char_cnn/ties',
      char_case,
      (char_problems.sample_chars(rng, ties=True),),
      {},
    ),
    _row(
      'char_cnn/windows',
      char_case,
      (char_problems.sample_chars(rng, lead=(2, 3, 2)),),
      {},
    ),
  ]


def _row(formula, fn, args, static, exact_zero=False):
  """One plan entry: (formula, case fn, array args, static kwargs,
  exact_zero)."""
  return (formula, fn, args, static, exact_zero)


def _classifier_plan(rng, shapes):
  """Per classifier: each window-level objective, then max_margin with every
  hinge inactive."""
  plan = []
  for tag, model_cfg in problems.classifiers():
    for objective in objectives.records('window'):
      problem = problems.sample_classifier(rng, shapes, model_cfg, objective)
      plan.append(
        _row(
          f'{tag}/{objective.name}',
          classifier_cases,
          (problem,),
          dict(model_cfg=model_cfg, objective=objective),
        )
      )
    max_margin = objectives.get('max_margin')
    problem = problems.sample_classifier(
      rng, shapes, model_cfg, max_margin, inactive=True
    )
    plan.append(
      _row(
        f'{tag}/max_margin/inactive',
        classifier_cases,
        (problem,),
        dict(model_cfg=model_cfg, objective=max_margin),
        True,
      )
    )
  return plan


def _scorer_plan(rng, shapes):
  """Per nonlinearity: the window scorer, active then inactive."""
  plan = []
  for g in model_lib.NONLINEARITIES:
    problem = problems.sample_scorer(rng, shapes, g)
    plan.append(
      _row(
        f'scorer/{g}/window_margin',
        scorer_cases,
        (problem,),
        dict(nonlinearity=g),
      )
    )
    problem = problems.sample_scorer(rng, shapes, g, inactive=True)
    plan.append(
      _row(
        f'scorer/{g}/window_margin/inactive',
        scorer_cases,
        (problem,),
        dict(nonlinearity=g),
        True,
      )
    )
  return plan


def _l2_plan(rng, shapes, lam):
  """Per model (and the scorer): the L2 term under each convention."""
  plan = []
  window_models = [m for m in model_lib.MODELS if m != 'dilated']
  xent = objectives.get('xent')
  for model in (*window_models, 'scorer', 'dilated'):
    if model == 'scorer':
      params = problems.sample_scorer(rng, shapes, 'tanh')[0]
    elif model == 'dilated':  # the hidden model's, and the encoder's
      hidden = model_lib.ModelConfig('hidden')
      params = problems.sample_classifier(rng, shapes, hidden, xent)[0]
      encoder = problems.sample_dilated(rng, 2, 1, H=shapes.hidden)[0]
      params = dict(params, **encoder)
    else:
      model_cfg = model_lib.ModelConfig(model)
      params = problems.sample_classifier(rng, shapes, model_cfg, xent)[0]
    for name, (embeddings, biases) in L2_CONVENTIONS.items():
      plan.append(
        _row(
          f'l2/{model}/{name}',
          l2_case,
          (params, lam),
          dict(embeddings=embeddings, biases=biases),
        )
      )
  return plan


def _objective_plan(rng, shapes, lam):
  """The first two classifiers: the full objective (data + L2), word vectors
  fine-tuned then frozen."""
  plan = []
  for tag, model_cfg in problems.classifiers()[:2]:
    for objective in objectives.records('window'):
      problem = problems.sample_classifier(rng, shapes, model_cfg, objective)
      for frozen in (False, True):
        cfg = classifier.TrainConfig(
          objective=objective.name,
          l2_embeddings=True,
          l2_biases=True,
          freeze_embeddings=frozen,
        )
        vectors = 'frozen' if frozen else 'tuned'
        plan.append(
          _row(
            f'objective/{tag}/{objective.name}/{vectors}',
            objective_case,
            (problem, lam),
            dict(model_cfg=model_cfg, cfg=cfg, objective=objective),
          )
        )
  return plan


def _batch_grads_plan(rng, shapes):
  """Per classifier and objective: manual_grads.batch_grads, then the
  training step's batch_grads (both on the same problem)."""
  plan = []
  for tag, model_cfg in problems.classifiers():
    for objective in objectives.records('window'):
      problem = problems.sample_classifier(rng, shapes, model_cfg, objective)
      plan.append(
        _row(
          f'batch_grads/{tag}/{objective.name}',
          batch_grads_case,
          (problem,),
          dict(model_cfg=model_cfg, objective=objective),
        )
      )
      cfg = classifier.TrainConfig(
        objective=objective.name, l2_embeddings=True, l2_biases=True
      )
      plan.append(
        _row(
          f'train.batch_grads/{tag}/{objective.name}',
          hook_case,
          (problem,),
          dict(model_cfg=model_cfg, cfg=cfg, objective=objective),
        )
      )
  return plan


def make_plan(rng, shapes):
  """The checks of `check_all`, on problems drawn from rng.

  Args:
    rng: a numpy Generator.
    shapes: the Shapes of the window problems (the sentence rows of
      `sentence_plan` have SentenceShapes()).

  Returns:
    [(formula, case fn, its array args, its static kwargs, exact_zero)]; a
    case fn returns (manual, reference) or {suffix: (manual, reference)}.
  """
  # The draws from rng happen in this order: keep it (it fixes the problems).
  plan = _classifier_plan(rng, shapes)
  plan += _scorer_plan(rng, shapes)
  lam = float(rng.uniform(0.1, 1.0))
  plan += _l2_plan(rng, shapes, lam)
  plan += _objective_plan(rng, shapes, lam)
  plan += _batch_grads_plan(rng, shapes)
  return plan + sentence_plan(rng) + char_plan(rng) + dilated_plan(rng)


def run_plan(plan):
  """Every case of the plan, computed by one compiled program."""

  def program(args):
    return [fn(*a, **static) for (_, fn, _, static, _), a in zip(plan, args)]

  return jit_call(program, [args for _, _, args, _, _ in plan])


def check_all(seed=0, rtol=1e-10, shapes=None, select=None):
  """Every check, in float64 (enabled here, for this call only).

  Args:
    seed: seed of the random problems.
    rtol: the largest relative difference that passes.
    shapes: the Shapes of the window problems (default Shapes()).
    select: a predicate on a formula's name: only those checks run (the
      problems drawn are the same); None runs every check.

  Returns:
    The rows [(formula, autodiff.Diff)], one per formula and leaf.
  """
  with jax.enable_x64(True):
    plan = make_plan(np.random.default_rng(seed), shapes or problems.Shapes())
    plan = [p for p in plan if select is None or select(p[0])]
    rows = []
    for (formula, _, _, _, exact_zero), out in zip(plan, run_plan(plan)):
      cases = out if isinstance(out, dict) else {'': out}
      for suffix, (manual, reference) in cases.items():
        for diff in autodiff.compare(manual, reference, rtol, exact_zero):
          rows.append((formula + suffix, diff))
  return rows


def format_row(formula, diff):
  """One printed line: formula, leaf, max_abs, max_rel, PASS or FAIL."""
  status = 'PASS' if diff.ok else 'FAIL'
  note = f'  ({diff.note})' if diff.note else ''
  return (
    f'{formula:<55} {diff.name:<9} max_abs {diff.max_abs:.1e} '
    f'max_rel {diff.max_rel:.1e} {status}{note}'
  )
