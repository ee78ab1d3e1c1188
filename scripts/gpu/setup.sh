# Sourced at the start of every GPU-host command (from the repo root): node on the PATH, and the
# workspace + third-party packages resolvable through a node_modules made of links.
source .gpu-host/env.sh
rm -rf node_modules && mkdir -p node_modules/@df11
for d in .gpu-host/node_modules/*; do
  case "$d" in
    */@*) mkdir -p "node_modules/$(basename "$d")"; for s in "$d"/*; do ln -s "$PWD/$s" "node_modules/$(basename "$d")/$(basename "$s")"; done ;;
    *) ln -s "$PWD/$d" "node_modules/$(basename "$d")" ;;
  esac
done
for p in codec hub-loader models cuda-kernel cli; do ln -sfn "$PWD/packages/$p" "node_modules/@df11/$p"; done
ln -sfn "$PWD/apps/bench" node_modules/@df11/bench
export DF11_FIXTURES="$PWD/.gpu-host/fixtures"
