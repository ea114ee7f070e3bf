.PHONY: app test test-fast lint bench
app:  ## set up and start the web app
	bash scripts/app.sh
test:  ## set up, lint and run all tests
	bash scripts/test.sh
test-fast:  ## lint, then the tests that start no server, browser or torchrun (the quick loop while working; CI runs all)
	.venv/bin/ruff check . && .venv/bin/python -m pytest -m "not slow" -q
lint:
	.venv/bin/ruff check .
bench:  ## full benchmark suite (table + benchmarks/results.json)
	.venv/bin/python benchmarks/run.py --json benchmarks/results.json
