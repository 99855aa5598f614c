package vm

import (
	"crypto/rand"
	"math/big"
)

var (
	adjectives = []string{"brisk", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucky", "merry", "nimble", "proud", "quick", "quiet", "rapid", "sharp", "shiny", "sunny", "swift", "tidy", "vivid", "witty", "zesty"}
	nouns      = []string{"badger", "bison", "crane", "falcon", "ferret", "gecko", "heron", "ibex", "koala", "lemur", "lynx", "marten", "otter", "panda", "puffin", "quail", "raven", "robin", "seal", "tapir", "vole", "walrus", "wombat", "yak"}
)

// randomName returns a name such as "swift-otter-42".
func randomName() string {
	pick := func(list []string) string {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(list))))
		if err != nil {
			return list[0]
		}
		return list[n.Int64()]
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(100))
	return pick(adjectives) + "-" + pick(nouns) + "-" + n.String()
}
