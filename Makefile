.PHONY: setup up down demo test image image-test lint bench

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

# The container image (Containerfile), built with buildah; image-test runs every service from it.
image: setup
	bash scripts/setup.sh image
	bash scripts/image.sh

image-test:
	bash scripts/setup.sh image
	python3 -m pytest -q -m image --timeout=0

lint:
	ruff check reel services devstack tests bench scripts monitoring
	ruff format --check reel services devstack tests bench scripts monitoring
	mypy

bench: setup
	python3 -m bench
