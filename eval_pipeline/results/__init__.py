"""Results of runs: metrics with error bars, comparisons, the run report, the overview, samples as served."""
