# The two README commands: `make demo` and `make test` (each installs first if needed).
.PHONY: install demo test test-slow bench clean

install:
	scripts/install

demo: install
	.venv/bin/tomocell demo --out results/demo

test:
	scripts/run-tests

test-slow:
	scripts/run-tests --slow

clean:
	rm -rf results .pytest_cache
