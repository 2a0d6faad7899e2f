"""flask-smorest blueprints of the Jobico API."""
