from coars_verl.recipes import RECIPES_DIR

print(RECIPES_DIR)
