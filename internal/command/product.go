package command

import (
	"context"

	"github.com/google/uuid"

	"cqrsflow/internal/domain"
	"cqrsflow/internal/domain/product"
	"cqrsflow/internal/eventstore"
)

// CreateProduct creates a product with a new id.
type CreateProduct struct {
	Fields  product.Fields
	Request Request
}

// CreateProductHandler handles CreateProduct.
type CreateProductHandler struct{ x *executor }

// Handle creates the product; Result.ID is its new id.
func (h CreateProductHandler) Handle(ctx context.Context, cmd CreateProduct) (Result, error) {
	return h.x.run(ctx, cmd.Request, productPlan(h.x, uuid.NewString(), eventstore.NoAggregate,
		func(*product.Product) ([]domain.Event, error) { return product.Create(cmd.Fields), nil }))
}

// UpdateProduct replaces a product's fields (PUT semantics).
type UpdateProduct struct {
	ID              string
	ExpectedVersion int64 // 0: whatever the current version is
	Fields          product.Fields
	Request         Request
}

// UpdateProductHandler handles UpdateProduct.
type UpdateProductHandler struct{ x *executor }

// Handle updates the product unless it is unknown (domain.ErrNotFound),
// deleted (a *domain.RuleError) or not at the expected version.
func (h UpdateProductHandler) Handle(ctx context.Context, cmd UpdateProduct) (Result, error) {
	exp, err := expect(cmd.ExpectedVersion)
	if err != nil {
		return Result{}, err
	}
	return h.x.run(ctx, cmd.Request, productPlan(h.x, cmd.ID, exp,
		func(p *product.Product) ([]domain.Event, error) { return p.Update(cmd.Fields) }))
}

// DeleteProduct soft-deletes a product.
type DeleteProduct struct {
	ID              string
	ExpectedVersion int64 // 0: whatever the current version is
	Reason          string
	Request         Request
}

// DeleteProductHandler handles DeleteProduct.
type DeleteProductHandler struct{ x *executor }

// Handle deletes the product; deleting it twice breaks a rule.
func (h DeleteProductHandler) Handle(ctx context.Context, cmd DeleteProduct) (Result, error) {
	exp, err := expect(cmd.ExpectedVersion)
	if err != nil {
		return Result{}, err
	}
	return h.x.run(ctx, cmd.Request, productPlan(h.x, cmd.ID, exp,
		func(p *product.Product) ([]domain.Event, error) { return p.Delete(cmd.Reason) }))
}
