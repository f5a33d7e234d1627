"""The decks' formulas and their hand-derived gradients.

Each formula is a plain function over dicts of arrays whose docstring
names it, with its manual gradient beside it: the window classifiers
(`model`), the window objectives (`losses`) and their registry
(`objectives`), the sentence-level objectives (`crf`), the character CNN
(`chars`), the decks' backprop written out (`manual_grads`) and the
autodiff references (`autodiff`). The gradient check that compares them in
float64 (`derivations`, on the random problems of `derivation_problems`
and `char_problems`) lives here too; `./launch.sh gradcheck` runs it.
"""
