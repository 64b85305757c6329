"""The command line `eval-pipeline` (entry point: eval_pipeline.cli.main:main)."""
