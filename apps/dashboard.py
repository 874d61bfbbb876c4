"""Dashboard entry point: ``streamlit run apps/dashboard.py`` (``kstream-lab dashboard`` does the same).

The page is :mod:`kstream_lab.services.dashboard`; Streamlit re-runs this script on every refresh, and
each run draws the page once.
"""

from kstream_lab.services.dashboard import main

main()
