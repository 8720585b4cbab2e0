package query

import "net/url"

type urlValues map[string]string

func (u urlValues) encode() string {
	v := url.Values{}
	for k, s := range u {
		v.Set(k, s)
	}
	return v.Encode()
}
