"""`make demo`, and the synthetic lm-eval results and tiny model it and the tests build."""
