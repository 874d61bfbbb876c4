"""The pipeline's HTTP services and its dashboard page, shipped inside the package.

``order_service`` and ``customer_service`` are FastAPI apps (``kstream-lab worker order-service``);
``dashboard`` is the Streamlit page (``kstream-lab dashboard``). ``apps/*.py`` in a source checkout
are thin entry points over these for ``uvicorn`` and ``streamlit run``.
"""
