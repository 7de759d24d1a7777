import sys

from genzoo.launch import main

sys.exit(main())
