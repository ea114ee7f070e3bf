.PHONY: app test lint bench
app:  ## set up and start the web app
	bash scripts/app.sh
test:  ## set up, lint and run all tests
	bash scripts/test.sh
lint:
	.venv/bin/ruff check .
bench:  ## full benchmark suite (table + benchmarks/results.json)
	.venv/bin/python benchmarks/run.py --json benchmarks/results.json
