from services.ideas.service import DEFINITION
from services.kit.server import run

if __name__ == "__main__":
    run(DEFINITION)
