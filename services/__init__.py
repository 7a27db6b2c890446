"""The service layer: every admin action is checked here and sent to its workflow.

The API, the console and the CLI call these services and get typed models back
(`services.models`).
"""
