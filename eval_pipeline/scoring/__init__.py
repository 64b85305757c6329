"""lm-eval's per-sample semantics: rules (filters, metric functions), corpus metrics, gradability, task code."""
