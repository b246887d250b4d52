.PHONY: setup up down demo test lint bench

setup:
	bash scripts/setup.sh

up: setup
	reel up

down:
	reel down

demo: setup
	bash scripts/demo.sh

test:
	bash scripts/setup.sh test
	python3 -m pytest -q

lint:
	ruff check reel services devstack tests bench scripts
	ruff format --check reel services devstack tests bench scripts
	mypy

bench: setup
	python3 -m bench
