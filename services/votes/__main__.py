from services.kit.server import run
from services.votes.service import DEFINITION

if __name__ == "__main__":
    run(DEFINITION)
