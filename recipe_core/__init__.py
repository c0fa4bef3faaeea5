"""Recipe's core: every piece of logic behind the pages and the CLI; never imports Streamlit."""
