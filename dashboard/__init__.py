"""The StackLab dashboard: thin Streamlit pages over `core` (which they never make import Keras)."""
