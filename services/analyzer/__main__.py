from libs import lifecycle
from services.analyzer import app

lifecycle.main("analyzer", app.Settings, app.setup)
