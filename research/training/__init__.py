"""Training: the compiled loop, its optimizer, and what runs around it.

`facade` trains a stack of configurations (a run, an ensemble, a sweep) of a
resolved run; `driver` steps `engine`'s loop for it (and for the benchmarks
and the window scorer), with metrics, TensorBoard streams (`events`) and
profiles; the window task (`classifier`) and the sentence
task (`sequence`) give it their steps (`prediction` scores and decodes
what they trained), `optim` the update (with `rows`'
sparse table rows), `parallel` the device mesh. Between the loop's calls:
checkpoints (`checkpoint`, `resume`), meters, the kept parameters
(`selection`), divergence, and document context's first pass
(`two_passes`, `document_context`). `window_scorer` is the deck's scorer
with its corrupt-window training.
"""
