"""The dashboard's own Streamlit components (components v2): their files sit beside their module."""
