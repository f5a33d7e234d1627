"""The experiments' computations: each study trains and measures, and returns
its results as data (the objective x L2 sweep, the ablation, frozen vs
fine-tuned vectors, margin vs logistic, loop vs matrix, throughput);
research.reports renders them."""
