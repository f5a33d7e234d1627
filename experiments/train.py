r"""Trains one window classifier and scores it with conlleval's entity F1.

  ./launch.sh train --workdir=runs/hidden
  ./launch.sh train --data_dir=../shared/data/conll2003 --workdir=runs/conll
  ./launch.sh train --flagfile=experiments/configs/conll_hidden.flags

Writes into --workdir: flags.txt, config.json, metrics.jsonl, result.json,
params.npz, vocab.txt, tags.txt, pretrained_words.txt, checkpoints/
(research/workdir.py), events/ (TensorBoard's: tensorboard --logdir runs/),
and examples.md: the decks' ambiguous sentences
tagged by the trained model. A killed run continues where its newest
checkpoint left it with the same command plus --resume.
The shared flags (data, model, optimizer, run directory) are defined in
experiments/_flags.py; --help lists every flag this entry point reads.
"""

from absl import flags

from experiments import _configs
from experiments import _flag_spec
from experiments import _flags
from experiments import _run
from research import files
from research import setup as setup_lib
from research import timing
from research import workdir as workdir_lib
from research.evaluation import tagging
from research.formulas import objectives
from research.training import engine
from research.training import facade as training
from research.training import selection

_OBJECTIVE = flags.DEFINE_enum(
  'objective',
  'xent',
  list(objectives.names()),
  f'One of the registry (research/formulas/objectives.py): '
  f'{objectives.describe()}.',
)
_SELECT = flags.DEFINE_enum(
  'select',
  'last',
  list(selection.SELECTIONS),
  'Keep the final parameters, or those of the evaluation with the best dev F1.',
)
_ENSEMBLE = flags.DEFINE_integer(
  'ensemble',
  1,
  'Members (seeds seed, seed+1, ...) trained as one program; their scores '
  'are averaged.',
  lower_bound=1,
)
_TUNE_O_BIAS = flags.DEFINE_bool(
  'tune_o_bias',
  False,
  'After training, choose on dev the bias against O that decoding takes '
  "from each word's score of O (0, 0.5, 1, 1.5, 2, 3: more entities, "
  'recall for precision), kept only when its F1 gain over no bias beats a '
  'paired bootstrap over the dev sentences (95% interval above 0; '
  "result.json's o_bias_test); config.json keeps it for evaluate and "
  'predict.',
)
_PROFILE = flags.DEFINE_bool(
  'profile',
  False,
  "Record a jax.profiler trace of the model's 5 training steps before its "
  'first evaluation, the evaluation and the 5 steps after (host work '
  "between calls included) into WORKDIR/profile: TensorBoard's profile "
  'plugin or ui.perfetto.dev reads it (docs/devices.md).',
)
_flag_spec.use(
  _flags.DATA,
  _flags.MODEL_FLAGS,
  _flags.TRAINING,
  ('lr', 'epochs', 'eval_every', 'decode', 'l2', 'seed'),
  _flags.RUN_DIR,
  _flags.CHECKPOINTING,
  _flags.DEVICES,
)
_L2 = _flags.L2
_SEED = _flags.SEED


def main(_):
  clock = timing.Clock()
  clock.add('startup', timing.process_seconds() or 0.0)
  workdir = _run.workdir('train', checkpoints=True)
  log = _run.log
  with clock('load'):
    ds = _configs.load_dataset(seed=_SEED.value)
  _configs.check_batch_size(ds)
  model_cfg = _configs.model_config()
  cfg = _configs.train_config(objective=_OBJECTIVE.value)
  checkpoint = _run.checkpointer(workdir)
  setup = setup_lib.resolve(
    ds, model_cfg, cfg, _flags.DECODE.value, _ENSEMBLE.value
  )
  params, result, setup, _ = training.train(
    setup,
    engine.Hyper(_flags.LR.value, _L2.value),
    epochs=_flags.EPOCHS.value,
    seed=_SEED.value,
    select=_SELECT.value,
    document=_configs.document_context(),
    eval_every=_flags.EVAL_EVERY.value,
    eval_train=True,
    checkpoint=checkpoint,
    metrics_file=workdir / 'metrics.jsonl',
    events_dir=workdir / 'events',
    profile_dir=workdir / 'profile' if _PROFILE.value else None,
    log=log,
    tune_o_bias=_TUNE_O_BIAS.value,
  )
  clock.merge(result.pop('seconds'))
  with clock('write'):
    config = setup.config_json(result.get('o_bias', 0.0))
    ds = setup.ds
    # Each file atomic; the manifest, written last, seals them together.
    outputs = workdir_lib.save_model(
      workdir, params, ds.vocab, ds.tags, config, files.Outputs(workdir)
    )
    model = tagging.from_parts(params, ds.vocab, ds.tags, config)
    outputs.write('examples.md', tagging.examples_markdown(model))
  # result.json last, with where the run's time went (and, of it, the
  # checksums and fsyncs that make the outputs and checkpoints safe).
  wall = timing.process_seconds() or sum(clock.seconds.values())
  result['wall'] = timing.breakdown(clock.seconds, wall)
  result['integrity_seconds'] = {k: round(v, 3) for k, v in files.SPENT.items()}
  result['backend'] = _run.backend()
  outputs.write('result.json', workdir_lib.json_text(result))
  outputs.seal()
  _report(result, workdir, log)


def _report(result, workdir, log):
  """The closing lines: the scores (with those of the entities whose
  string is, or is not, a training entity), the speed, where the time
  went."""
  for split in ('dev', 'test'):
    if split in result:
      r = result[split]
      log(
        f'{split}: precision {r["precision"]:.2f} recall {r["recall"]:.2f} '
        f'F1 {r["f1"]:.2f} accuracy {r["accuracy"]:.2f}'
      )
      for group in ('unseen', 'seen'):
        if group in r:
          g = r[group]
          log(
            f'  {group} entities ({g["num_gold"]:,} of {r["num_gold"]:,}): '
            f'precision {g["precision"]:.2f} recall {g["recall"]:.2f} '
            f'F1 {g["f1"]:.2f}'
          )
  unit = 'words' if result['trained_on'] == 'sentences' else 'windows'
  log(
    f'{result["train_windows_per_sec"]:,.0f} training {unit}/s '
    f'({result["train_seconds"]:.1f}s training, '
    f'{result["compile_seconds"]:.1f}s compiling); wrote {workdir}'
  )
  log(timing.line(result['wall']))


if __name__ == '__main__':
  _run.run(main)
