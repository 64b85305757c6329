"""The historical import: lm-eval results and samples from a source into versioned suites, and reading them back."""
