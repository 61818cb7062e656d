package words

import "testing"

func TestWords(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Count(1, "table"), "1 table"},
		{Count(0, "table"), "0 tables"},
		{Count(3, "table"), "3 tables"},
		{Plural(2, "index", "indexes"), "2 indexes"},
		{Plural(1, "index", "indexes"), "1 index"},
		{Pick(1, "it", "them"), "it"},
		{Pick(4, "it", "them"), "them"},
		{List([]string{"a", "b"}), "a, b"},
		{List([]string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}), "1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more"},
		{Bytes(-1), "unknown"},
		{Bytes(512), "512 B"},
		{Bytes(16 << 20), "16.0 MiB"},
		{Bytes(3 << 30), "3.0 GiB"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
