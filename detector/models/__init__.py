"""The online models, one kind per kind of metric: pure logic over each series' numbers.

They run either as Python source or compiled by mypyc (``SPENDWATCH_COMPILE=1
pip install .``): the same answers at different speeds. :func:`build` says
which, for ``spendwatch --version`` and the worker's ``/health`` and
``/metrics``, so an operator can see what a deployment actually runs.
"""


def build() -> str:
    """``"compiled"`` when these models were compiled by mypyc, ``"source"`` when they run as Python.

    >>> build()
    'source'
    """
    return "source" if __file__.endswith(".py") else "compiled"
